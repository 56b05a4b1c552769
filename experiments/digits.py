"""The offline default: a GA over nos graphs on scikit-learn digits.

Needs no download and finishes a useful search in a few minutes on 2 CPU cores:

    python -m symopt.main --config=experiments/digits.py --workdir=runs/digits

Candidates are trained on the digits MLP (fitness normalised by Adam); the best
8 then go through a progressive elimination on the digits ConvNet with a
longer budget and more seeds. Override any key, e.g.
``--config.search.generations=30 --config.space.options.max_nodes=6``.
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
    config.tasks.search = "digits_mlp"
    config.tasks.steps = 300
    config.tasks.seeds = 2
    config.elimination.tasks = "digits_cnn"
    config.elimination.top_k = 8
    config.elimination.steps = 500
    config.elimination.seeds = 3
    return config
