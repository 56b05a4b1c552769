"""Offline classification tasks: scikit-learn digits and MNIST-1D.

Nothing here downloads anything: ``load_digits`` ships with scikit-learn and
MNIST-1D is generated locally by the ``mnist1d`` package's ``make_dataset``
(its ``get_dataset`` would try the network first, so it is not used). Both
are small enough that a population of candidates trains on a laptop CPU;
they are the default search tasks.
"""

from __future__ import annotations

import functools

import numpy as np

from symopt.tasks import models
from symopt.tasks.base import (
    Data,
    MissingDependencyError,
    Task,
    classification_task,
    install_hint,
    to_device,
)

# --------------------------------------------------------------------------
# scikit-learn digits (8x8 images, 10 classes, 1797 examples).


@functools.cache
def load_digits(seed: int = 0) -> Data:
    """scikit-learn's digits as ``[n, 8, 8, 1]`` images in [0, 1], split 60/20/20.

    The split is stratified by class and fixed by ``seed`` (scikit-learn's
    ``train_test_split``): 1078 train, 359 val, 360 test examples.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    x, y = sk_load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=0.6, stratify=y, random_state=seed
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed
    )
    return to_device(
        {
            "train": {"x": x_train, "y": y_train},
            "val": {"x": x_val, "y": y_val},
            "test": {"x": x_test, "y": y_test},
        }
    )


def digits_mlp(
    *, steps: int = 200, batch_size: int = 64, seeds: int = 2, hidden: int = 64, split_seed: int = 0
) -> Task:
    """Digits with an MLP ``64 -> hidden -> 10``."""
    return classification_task(
        "digits_mlp",
        module=models.MLP(hidden=(hidden,), num_classes=10),
        input_shape=(8, 8, 1),
        num_classes=10,
        data=functools.partial(load_digits, split_seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
    )


def digits_cnn(
    *, steps: int = 200, batch_size: int = 64, seeds: int = 2, split_seed: int = 0
) -> Task:
    """Digits with a ConvNet: conv 8 -> conv 16 (3x3, stride 2) -> dense 10."""
    return classification_task(
        "digits_cnn",
        module=models.CNN(channels=(8, 16), hidden=0, num_classes=10, patch_conv=True, pool=False),
        input_shape=(8, 8, 1),
        num_classes=10,
        data=functools.partial(load_digits, split_seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
    )


# --------------------------------------------------------------------------
# MNIST-1D (40-sample 1-D signals, 10 classes).


@functools.cache
def load_mnist1d(num_samples: int = 5000, val_fraction: float = 0.2, seed: int = 42) -> Data:
    """MNIST-1D generated locally with the ``mnist1d`` package's default arguments.

    Greydanus, "Scaling down deep learning" (arXiv 2011.14439): ``make_dataset``
    with ``get_dataset_args()`` (seed 42, 5000 samples, 80% train) gives the
    standard 4000/1000 train/test split; the last ``val_fraction`` of the
    training part (already shuffled by ``make_dataset``) is held out as
    validation. Signals are ``[n, 40]`` float32, standardised by the package.
    NumPy's global random state, which ``make_dataset`` reseeds, is restored.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise MissingDependencyError(
            f"the mnist1d tasks need the mnist1d package: {install_hint('mnist1d')}"
        ) from e
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    state = np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(state)
    n_val = int(round(len(raw["y"]) * val_fraction))
    n_train = len(raw["y"]) - n_val
    return to_device(
        {
            "train": {"x": raw["x"][:n_train], "y": raw["y"][:n_train]},
            "val": {"x": raw["x"][n_train:], "y": raw["y"][n_train:]},
            "test": {"x": raw["x_test"], "y": raw["y_test"]},
        }
    )


def mnist1d_mlp(
    *,
    steps: int = 300,
    batch_size: int = 64,
    seeds: int = 2,
    hidden: int = 100,
    num_samples: int = 5000,
    seed: int = 42,
) -> Task:
    """MNIST-1D with an MLP ``40 -> hidden -> hidden -> 10``."""
    return classification_task(
        "mnist1d_mlp",
        module=models.MLP(hidden=(hidden, hidden), num_classes=10),
        input_shape=(40,),
        num_classes=10,
        data=functools.partial(load_mnist1d, num_samples, 0.2, seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
    )


def mnist1d_cnn(
    *,
    steps: int = 300,
    batch_size: int = 64,
    seeds: int = 2,
    num_samples: int = 5000,
    seed: int = 42,
) -> Task:
    """MNIST-1D with a 1-D ConvNet: conv 16 -> conv 16 (kernel 5, stride 2) -> dense 10."""
    return classification_task(
        "mnist1d_cnn",
        module=models.CNN1D(channels=(16, 16), num_classes=10),
        input_shape=(40,),
        num_classes=10,
        data=functools.partial(load_mnist1d, num_samples, 0.2, seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
    )
