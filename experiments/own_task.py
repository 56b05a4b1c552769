"""A search on your own model and data: a Flax NNX classifier of scikit-learn's wine data.

    python -m symopt.main --config=experiments/own_task.py --workdir=runs/own_task

``make_task`` is what a user writes: a function returning
``symopt.tasks.from_arrays(...)`` from a Flax model (linen or NNX) and NumPy
arrays. The config names it as ``module:function``; the module is imported
from the current directory (here the repository root, so
``experiments.own_task``) or from the installed packages. Its keyword
arguments are the budget the search passes (``steps``, ``seeds``) and the
options a config may set in ``tasks.options``.
"""

import numpy as np
from flax import nnx
from sklearn.datasets import load_wine

import symopt
from symopt.config import default_config


class Classifier(nnx.Module):
    def __init__(self, features: int, hidden: int, classes: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(features, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, classes, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def make_task(steps: int = 300, batch_size: int = 32, seeds: int = 2, hidden: int = 32):
    x, y = load_wine(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    train, val, test = np.split(order, [100, 139])
    return symopt.tasks.from_arrays(
        "wine", lambda rngs: Classifier(x.shape[1], hidden, 3, rngs=rngs),
        {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])},
        loss="cross_entropy", steps=steps, batch_size=batch_size, seeds=seeds)


def get_config():
    config = default_config()
    config.search.generations = 8
    config.search.population_size = 16
    config.space.name = "nos"
    config.space.options.max_nodes = 5
    config.space.options.leaf_ops = True  # the per-leaf operators; False: element-wise only
    config.tasks.search = "experiments.own_task:make_task"
    config.evaluation.metric = "loss"
    config.evaluation.lr_multipliers = (0.5, 1.0, 2.0)
    config.evaluation.reference_lr_multipliers = (0.3, 1.0, 3.0, 10.0)
    return config
