"""The recommended offline search: optimizers that hold up on tasks the search never saw.

    python -m symopt.main --config=experiments/generalize.py --workdir=runs/generalize

A GA over the genome of primitive update terms (Marfinetz 2025), seeded with
SGD, Adam, AdamW, RMSProp and the published terms-GA optimizer, under the
protocol that makes discoveries transfer (Chen et al. 2023; Metz et al.):

* fitness is the final validation loss, clipped, divided into the loss of an
  Adam whose learning rate is tuned per task, and aggregated by the geometric
  mean over three search tasks of different families (MLP classifier,
  regression, autoencoder);
* every candidate also trains at 0.3x and 3x its learning rate, as rows of the
  same compiled program; the geometric mean over the three rates is its
  fitness (robustness to the rate), and the best rate is written back;
* the best 8 move to validation tasks (an MLP on MNIST-1D and a noisy
  quadratic) with more steps and seeds, which choose the winner; near-equal
  candidates (within 1%) go to the simpler;
* the test tasks (a ConvNet on digits and on MNIST-1D, a transformer, a
  recurrent net, logistic regression) only report: the winner and the runners-up
  next to the comparisons (tuned Adam; AdamW, Lion and Muon with warmup and
  cosine decay; schedule-free AdamW; the terms-GA optimizer), each as found and
  lr-tuned over 0.1x to 300x its rate, in summary.md.

Offline, no download; the MNIST-1D tasks need `pip install -e '.[mnist1d]'`. See
docs/benchmarks.md for its time and results.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "ga"
    config.search.generations = 25
    config.search.population_size = 32
    config.search.seeds = "sgd,adam,adamw,rmsprop,terms_ga"
    config.search.options.tournament_size = 4
    config.search.options.elites = 3
    config.space.name = "terms"
    config.space.options.leaf_ops = True  # the per-leaf operators; False: element-wise only
    config.tasks.search = "digits_mlp,regression,digits_autoencoder"
    config.tasks.test = "digits_cnn,mnist1d_cnn,seq_transformer,seq_rnn,logistic"
    config.tasks.seeds = 2
    config.evaluation.metric = "loss"
    config.evaluation.lr_multipliers = (0.3, 1.0, 3.0)
    config.evaluation.lr_aggregate = "mean"
    config.evaluation.reference_lr_multipliers = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    config.evaluation.simplicity_tolerance = 0.01
    config.elimination.tasks = "mnist1d_mlp+noisy_quadratic"
    config.elimination.top_k = 8
    config.elimination.seeds = 3
    config.test.top_k = 3
    config.test.seeds = 3
    return config
