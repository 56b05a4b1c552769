"""Morgan & Hougen 2024 (dual-joint search), the published protocol.

    pip install -e '.[tfds]'
    python -m symopt.main --config=experiments/nos_joint.py --workdir=runs/nos_joint

Update graph, decay sub-graphs and LR schedule searched jointly by the
mutation-only particle GA; surrogate evaluation on CIFAR-10 with the small
ConvNet budget; then progressive elimination of the best to CIFAR-100 and
the fine-tuning sets Flowers102, Cars196 and Caltech101 (half kept per stage).
The paper's operator set: the per-leaf operators (``orth``, ``trust``, ...)
are off (``leaf_ops=False``), so the space draws what it drew as published.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "particle_ga"
    config.search.generations = 40
    config.search.population_size = 16
    config.search.options.children_per_particle = 4
    config.space.name = "nos"
    config.space.options.max_nodes = 8
    config.space.options.p_decay = 0.3
    config.space.options.p_schedule_graph = 0.2
    config.space.options.leaf_ops = False  # the paper's operators only
    config.tasks.search = "cifar10"
    config.tasks.steps = 300
    config.tasks.batch_size = 128
    config.elimination.tasks = "cifar100,oxford_flowers102,cars196,caltech101"
    config.elimination.top_k = 16
    config.elimination.keep = 0.5
    config.elimination.steps = 1000
    return config
