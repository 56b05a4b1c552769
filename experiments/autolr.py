"""AutoLR (Carvalho et al. 2022): adaptive per-weight rules on Fashion-MNIST.

    pip install -e '.[tfds]'
    python -m symopt.main --config=experiments/autolr.py --workdir=runs/autolr

Grammar-based rules ``alpha, beta, sigma`` (per-weight states) and ``grad``,
evolved by a GA with tournament selection, elitism, crossover 0.9 and
mutation 0.15, seeded with ADES and the sign optimizer it found.
``--config.space.options.mode=dynamic --config.search.seeds=sgd`` searches
learning-rate policies ``lr_{e+1} = f(epoch, lr_e)`` of SGD instead.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "ga"
    config.search.generations = 30
    config.search.population_size = 50
    config.search.seeds = "sgd,ades,autolr_sign"
    config.search.options.tournament_size = 3
    config.search.options.elites = 1
    config.search.options.crossover_rate = 0.9
    config.search.options.mutation_rate = 0.15
    config.space.name = "autolr"
    config.space.options.mode = "adaptive"
    config.tasks.search = "fashion_mnist"
    config.tasks.steps = 500
    config.elimination.tasks = "mnist,cifar10"
    config.elimination.top_k = 5
    config.elimination.keep = 1.0
    config.elimination.steps = 1000
    return config
