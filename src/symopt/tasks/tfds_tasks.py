"""Image classification tasks on TensorFlow Datasets (TFDS).

The tasks of Marfinetz, "Evolving Deep Learning Optimizers" (arXiv
2512.11853): MNIST and Fashion-MNIST with a small CNN,
CIFAR-10 (and CIFAR-100) with a 2-block BatchNorm CNN, 15k-example training
subsets, 500 steps of batch 128, 2 seeds. The fine-tuning sets of Morgan &
Hougen (arXiv 2404.06679) -- Flowers102, Cars196,
Caltech101 -- are resized to 32x32 and trained from scratch with the
BatchNorm CNN: a cheap stand-in for their EfficientNetV2-Small fine-tuning.

``tensorflow_datasets`` is imported only when a task's ``data()`` is called
(``import symopt.tasks`` never needs it). Data is read with
``tfds.builder(...).as_data_source`` (random access, no TensorFlow) where the
dataset was prepared in the ``array_record`` format, and with
``as_dataset`` (TensorFlow) where it was prepared as TFRecords. Nothing is
downloaded unless the task is built with ``download=True``; a dataset that is
not prepared raises :class:`DataNotFoundError` with the command that prepares
it. The data directory is the ``data_dir`` option, else ``$TFDS_DATA_DIR``,
else TFDS's default (``~/tensorflow_datasets``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shlex
from collections.abc import Callable
from typing import Any

import numpy as np

from symopt.tasks import base, models
from symopt.tasks.base import (
    Data,
    DataNotFoundError,
    MissingDependencyError,
    Task,
    carve_validation,
    classification_task,
    flip_and_crop,
    to_device,
)

INSTALL_HINT = base.install_hint("tfds")


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """How one TFDS dataset becomes a task."""

    tfds_name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # the model's input; images are resized to it if needed
    model: str  # "cnn" (small CNN) or "bn_cnn" (BatchNorm CNN)
    val_split: str | None = None  # the dataset's own validation split; else carved from train


SPECS: dict[str, TfdsSpec] = {
    "mnist": TfdsSpec("mnist", 10, (28, 28, 1), "cnn"),
    "fashion_mnist": TfdsSpec("fashion_mnist", 10, (28, 28, 1), "cnn"),
    "cifar10": TfdsSpec("cifar10", 10, (32, 32, 3), "bn_cnn"),
    "cifar100": TfdsSpec("cifar100", 100, (32, 32, 3), "bn_cnn"),
    "oxford_flowers102": TfdsSpec("oxford_flowers102", 102, (32, 32, 3), "bn_cnn", "validation"),
    "cars196": TfdsSpec("cars196", 196, (32, 32, 3), "bn_cnn"),
    "caltech101": TfdsSpec("caltech101", 102, (32, 32, 3), "bn_cnn"),
}


def tfds_task(
    name: str,
    *,
    steps: int = 500,
    batch_size: int = 128,
    seeds: int = 2,
    train_size: int = 15_000,
    val_size: int = 5_000,
    test_size: int = 10_000,
    data_dir: str | None = None,
    download: bool = False,
    augment: bool = False,
    eval_batch_size: int = 500,
    split_seed: int = 0,
) -> Task:
    """The task for TFDS dataset ``name`` (a key of :data:`SPECS`).

    Args:
      name: dataset / task name.
      steps: training steps of one run.
      batch_size: minibatch size.
      seeds: runs per candidate.
      train_size: training examples (a fixed random subset of the train split).
      val_size: validation examples: at most a fifth of the train split,
        disjoint from the training subset, where the dataset has no
        validation split; else a subset of its validation split.
      test_size: test examples (a fixed random subset of the test split).
      data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or TFDS's default).
      download: download and prepare the dataset if it is not prepared.
      augment: random flips and 4-pixel crops of training batches
        (natural images only; Marfinetz used them for CIFAR-10).
      eval_batch_size: examples per evaluation chunk (bounds memory under vmap).
      split_seed: seed of the subset / validation split permutation.

    Returns:
      The task; its data is loaded on the first ``task.data()`` call.
    """
    spec = SPECS[name]
    if spec.model == "cnn":
        module = models.CNN(channels=(32, 64), hidden=256, num_classes=spec.num_classes)
    else:
        module = models.BatchNormCNN(channels=(32, 64), hidden=512, num_classes=spec.num_classes)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    data = functools.partial(
        _load_now, name, data_dir, train_size, val_size, test_size, split_seed, download=download
    )
    return classification_task(
        name,
        module=module,
        input_shape=spec.image_shape,
        num_classes=spec.num_classes,
        data=data,
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        eval_batch_size=eval_batch_size,
        augment=flip_and_crop if augment else None,
    )


# --------------------------------------------------------------------------
# Loading.

_CACHE: dict[tuple, Data] = {}


def _load_now(name: str, data_dir: str | None, *args: Any, download: bool) -> Data:
    """:func:`load_tfds`, with a ``data_dir`` of None read from ``$TFDS_DATA_DIR``
    when the data is loaded: tasks are cached by their arguments, so reading it
    when the task is built would keep a stale directory."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR")
    return load_tfds(name, data_dir, *args, download=download)


def load_tfds(
    name: str,
    data_dir: str | None,
    train_size: int,
    val_size: int,
    test_size: int,
    split_seed: int,
    *,
    download: bool = False,
) -> Data:
    """The train/val/test arrays of a TFDS task, loaded once per distinct arguments.

    Images become float32 NHWC arrays standardised per channel with the
    training subset's mean and standard deviation; labels int32.

    Raises:
      MissingDependencyError: ``tensorflow_datasets`` (or TensorFlow, for
        TFRecord-prepared data) is not installed.
      DataNotFoundError: the dataset is not prepared in the data directory
        and ``download`` is false.
    """
    key = (name, data_dir, train_size, val_size, test_size, split_seed)
    if key not in _CACHE:
        _CACHE[key] = to_device(
            _load(SPECS[name], data_dir, train_size, val_size, test_size, split_seed, download)
        )
    return _CACHE[key]


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise MissingDependencyError(
            f"the TFDS tasks need tensorflow-datasets: {INSTALL_HINT}"
        ) from e
    return tfds


def _load(spec, data_dir, train_size, val_size, test_size, split_seed, download):
    tfds = _import_tfds()
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        if not download:
            raise DataNotFoundError(
                f"TFDS dataset {spec.tfds_name!r} is not prepared in "
                f"{shlex.quote(os.fspath(builder.data_dir_root))}; "
                f"prepare it with: {prepare_command(spec.tfds_name, builder.data_dir_root)} "
                f"(needs {INSTALL_HINT}), or let TFDS download it (download=True; "
                "--config.tasks.download=True)"
            )
        builder.download_and_prepare(file_format="array_record")

    prepare = functools.partial(_to_shape, shape=spec.image_shape)
    n_train, read_train = _reader(tfds, builder, "train", prepare)
    if spec.val_split is None:
        train_idx, val_idx = carve_validation(n_train, val_size, train_size, split_seed)
        read_val = read_train
    else:
        train_idx = _subset(n_train, train_size, split_seed)
        n_val, read_val = _reader(tfds, builder, spec.val_split, prepare)
        val_idx = _subset(n_val, val_size, split_seed)
    n_test, read_test = _reader(tfds, builder, "test", prepare)
    test_idx = _subset(n_test, test_size, split_seed)

    splits = {
        "train": read_train(train_idx),
        "val": read_val(val_idx),
        "test": read_test(test_idx),
    }
    train_x = splits["train"]["x"].astype(np.float32) / 255.0
    mean = train_x.mean(axis=(0, 1, 2))
    std = train_x.std(axis=(0, 1, 2)) + 1e-6
    for arrays in splits.values():
        arrays["x"] = (arrays["x"].astype(np.float32) / 255.0 - mean) / std
    return splits


def prepare_command(tfds_name: str, data_dir) -> str:
    """A shell command that downloads and prepares a TFDS dataset in ``array_record`` files.

    A Python one-liner rather than ``tfds build``: the TFDS 4.9.10 command
    line imports Apache Beam at start-up.
    """
    # Double-quoted Python literals (JSON's escapes are Python's), so shlex's
    # single quotes wrap the code without escapes for ordinary paths.
    code = (f"import tensorflow_datasets as tfds; tfds.builder({json.dumps(tfds_name)}, "
            f"data_dir={json.dumps(os.fspath(data_dir))})"
            '.download_and_prepare(file_format="array_record")')
    return shlex.join(["python", "-c", code])


def _subset(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset of ``min(size, n)`` of ``range(n)``."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def _reader(tfds, builder, split: str, prepare: Callable) -> tuple[int, Callable]:
    """``(num_examples, read)`` for one split; ``read(indices) -> {"x", "y"}`` (uint8 images)."""
    try:
        source = builder.as_data_source(split=split)
    except NotImplementedError:  # prepared without a random-access format (TFRecord)
        return _tf_reader(tfds, builder, split, prepare)

    def read(indices):
        examples = [source[int(i)] for i in indices]
        return _stack(examples, prepare)

    return len(source), read


def _tf_reader(tfds, builder, split: str, prepare: Callable) -> tuple[int, Callable]:
    """The TFRecord fallback: streams the split through ``tf.data``, keeping the wanted indices."""
    try:
        import tensorflow  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"TFDS dataset {builder.name!r} in {shlex.quote(os.fspath(builder.data_dir_root))} "
            "is prepared as TFRecords, "
            f"which needs TensorFlow to read: {INSTALL_HINT} (or rebuild it with "
            f"--file_format=array_record)"
        ) from e
    n = builder.info.splits[split].num_examples

    def read(indices):
        wanted = {int(i) for i in indices}
        examples = []
        for i, example in enumerate(tfds.as_numpy(builder.as_dataset(split=split))):
            if i in wanted:
                examples.append(example)
                if len(examples) == len(wanted):
                    break
        return _stack(examples, prepare)

    return n, read


def _stack(examples, prepare: Callable) -> dict[str, np.ndarray]:
    return {
        "x": np.stack([prepare(ex["image"]) for ex in examples]),
        "y": np.asarray([ex["label"] for ex in examples], np.int32),
    }


def _to_shape(image: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """An HWC uint8 image resized (bilinear, PIL) and channel-matched to ``shape``."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    height, width, channels = shape
    if image.shape[:2] != (height, width):
        from PIL import Image

        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        image = np.asarray(pil.resize((width, height), Image.BILINEAR))
        if image.ndim == 2:
            image = image[..., None]
    if image.shape[-1] != channels:
        image = np.broadcast_to(image[..., :1], (height, width, channels))
    return image
