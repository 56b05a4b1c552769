"""A GA over nos graphs on MNIST-1D (generated locally; ``pip install -e '.[mnist1d]'``).

    python -m symopt.main --config=experiments/mnist1d.py --workdir=runs/mnist1d

Search on the MNIST-1D MLP, then progressive elimination on the MNIST-1D
ConvNet and the digits ConvNet.
"""

from symopt.config import default_config


def get_config():
    config = default_config()
    config.search.name = "ga"
    config.search.generations = 20
    config.search.population_size = 32
    config.space.name = "nos"
    config.space.options.max_nodes = 6
    config.space.options.leaf_ops = True  # the per-leaf operators; False: element-wise only
    config.tasks.search = "mnist1d_mlp"
    config.tasks.steps = 300
    config.elimination.tasks = "mnist1d_cnn,digits_cnn"
    config.elimination.top_k = 8
    config.elimination.steps = 500
    return config
