"""Marfinetz 2025 ("Evolving Deep Learning Optimizers"), the published protocol.

    pip install -e '.[tfds]'
    python -m symopt.main --config=experiments/terms_ga.py --workdir=runs/terms_ga

The genome of primitive update terms, a GA of 50 generations x 50 (tournament
4, 3 elites, seeded with SGD, Adam, AdamW, RMSProp), fitness averaged over
MNIST, Fashion-MNIST (small CNN) and CIFAR-10 (BatchNorm CNN) on 15k-example
subsets, 500 steps, batch 128, 2 seeds, normalised by Adam. The final
comparison (1000 steps, 3 seeds, the three tasks aggregated) is the one
elimination stage. The paper's seven term kinds: ``orth_momentum`` (Muon, ours)
is off (``leaf_ops=False``), so the space draws what it drew as published.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "ga"
    config.search.generations = 50
    config.search.population_size = 50
    config.search.seeds = "sgd,adam,adamw,rmsprop"
    config.search.options.tournament_size = 4
    config.search.options.elites = 3
    config.search.options.crossover_rate = 1.0
    config.space.name = "terms"
    config.space.options.leaf_ops = False  # the paper's term kinds only
    config.tasks.search = "mnist,fashion_mnist,cifar10"
    config.tasks.steps = 500
    config.tasks.batch_size = 128
    config.tasks.seeds = 2
    config.elimination.tasks = "mnist+fashion_mnist+cifar10"  # one stage: the three together
    config.elimination.top_k = 5
    config.elimination.keep = 1.0
    config.elimination.steps = 1000
    config.elimination.on_search_tasks = True  # the final comparison re-measures the search tasks
    config.elimination.seeds = 3
    return config
