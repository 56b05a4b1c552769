"""A GA over nos graphs on CIFAR-10 (TFDS; the data must be prepared).

    pip install -e '.[tfds]'
    python -m symopt.main --config=experiments/cifar10.py --workdir=runs/cifar10

Candidates train the 2-block BatchNorm CNN of Marfinetz 2025 on a
15k-example subset for 500 steps (batch 128, 2 seeds); the best 8 move on to
CIFAR-100 with 1000 steps. ``--config.tasks.data_dir=...`` points at the TFDS
data; ``--config.tasks.download=True`` lets TFDS fetch it. Without the data,
the run stops at start with the command that prepares it.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "ga"
    config.search.generations = 30
    config.search.population_size = 50
    config.space.name = "nos"
    config.space.options.leaf_ops = True  # the per-leaf operators; False: element-wise only
    config.tasks.search = "cifar10"
    config.tasks.steps = 500
    config.tasks.batch_size = 128
    config.elimination.tasks = "cifar100"
    config.elimination.top_k = 8
    config.elimination.steps = 1000
    return config
