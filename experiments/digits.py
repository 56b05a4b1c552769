"""The offline default: a quick GA over nos graphs, with the generalization protocol.

Needs no download and finishes in about a minute on 2 CPU cores:

    python -m symopt.main --config=experiments/digits.py --workdir=runs/digits

The protocol of ``experiments/generalize.py`` (see docs/protocol.md) at a small
budget: candidates train on the digits MLP and a regression MLP at 0.5x, 1x
and 2x their learning rate, scored by final validation loss against an Adam
tuned over its learning rate (geometric mean over tasks and rates); the best 4
go to the digits ConvNet (validation), which picks the winner; an autoencoder,
logistic regression and a recurrent net (test) then report it next to tuned
Adam, AdamW with warmup and cosine, Lion, the terms-GA optimizer, Muon and
schedule-free AdamW, each tuned over the default ``test.lr_multipliers``
(0.1x-300x) and past an edge of them where its best is there (a narrower grid
left the comparisons' best rates at its top edge, and flattered the winner). Override
any key, e.g. ``--config.search.generations=30 --config.space.options.max_nodes=6``.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "ga"
    config.search.generations = 15
    config.search.population_size = 32
    config.search.options.tournament_size = 4
    config.search.options.elites = 3
    config.space.name = "nos"
    config.space.options.max_nodes = 6
    config.space.options.leaf_ops = True  # the per-leaf operators; False: element-wise only
    config.tasks.search = "digits_mlp,regression"
    config.tasks.test = "digits_autoencoder,logistic,seq_rnn"
    config.tasks.seeds = 2
    config.evaluation.metric = "loss"
    config.evaluation.lr_multipliers = (0.5, 1.0, 2.0)
    config.evaluation.lr_aggregate = "mean"
    config.evaluation.reference_lr_multipliers = (0.3, 1.0, 3.0, 10.0, 30.0)
    config.elimination.tasks = "digits_cnn"
    config.elimination.top_k = 4
    config.elimination.steps = 300
    config.elimination.seeds = 2
    config.test.top_k = 2
    config.test.seeds = 2  # test.lr_multipliers: the default grid, extended past its edges
    return config
