"""``symopt.tasks.tfds_tasks``: the TFDS image tasks, on mock data and on
files prepared offline (nothing is downloaded). The tests that need
tensorflow-datasets are skipped where it is not installed."""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symopt import tasks
from symopt.tasks import tfds_tasks


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def _norm(tree) -> jax.Array:
    """The global L2 norm of a pytree."""
    return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))


def _tfds_program(task: tasks.Task):
    """One compiled program: init, a loss + gradient, and both evaluations."""

    @jax.jit
    def run(key, data):
        params, state = task.init(key)
        (loss, new_state), grads = jax.value_and_grad(task.train_loss, has_aux=True)(
            params, state, key, data
        )
        evals = {s: task.eval_metrics(params, new_state, data, s) for s in ("val", "test")}
        return loss, _norm(grads), state, new_state, evals

    return run


# mnist under `pytest -m slow`: cifar10 (with BatchNorm's state) is checked by default.
@pytest.mark.parametrize(
    "name, image_shape, batch_norm",
    [pytest.param("mnist", (28, 28, 1), False, marks=pytest.mark.slow),
     ("cifar10", (32, 32, 3), True)],
)
def test_tfds_task_trains_and_evaluates_on_mock_data(tfds, tmp_path, name, image_shape, batch_norm):
    task = tasks.get(
        name, data_dir=str(tmp_path), download=True, batch_size=8, val_size=10, eval_batch_size=7
    )
    with tfds.testing.mock_data(num_examples=40):  # download_and_prepare is a no-op
        data = task.data()
    assert {s: data[s]["x"].shape for s in data} == {
        "train": (32, *image_shape),
        "val": (8, *image_shape),  # at most a fifth of the train split
        "test": (40, *image_shape),
    }
    assert all(data[s]["x"].dtype == jnp.float32 for s in data)
    assert all(int(data[s]["y"].max()) < task.num_classes for s in data)
    np.testing.assert_allclose(data["train"]["x"].mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    assert task.data() is data  # cached

    loss, grad_norm, state, new_state, evals = _tfds_program(task)(jax.random.key(0), data)
    assert loss.shape == () and np.isfinite(loss) and grad_norm > 0
    assert bool(state) == batch_norm
    if batch_norm:  # train mode updates the running statistics
        old, new = jax.tree.leaves(state), jax.tree.leaves(new_state)
        assert any(not np.allclose(a, b) for a, b in zip(old, new, strict=True))
    for metrics in evals.values():
        assert set(metrics) == {"loss", "accuracy"}
        assert np.isfinite(metrics["loss"]) and 0 <= metrics["accuracy"] <= 1


def test_tfds_variable_size_images_are_resized_and_use_the_validation_split(tfds, tmp_path):
    task = tasks.get("oxford_flowers102", data_dir=str(tmp_path), download=True, val_size=12)
    with tfds.testing.mock_data(num_examples=20):
        data = task.data()
    assert {s: data[s]["x"].shape for s in data} == {
        "train": (20, 32, 32, 3),
        "val": (12, 32, 32, 3),
        "test": (20, 32, 32, 3),
    }
    assert task.num_classes == 102


@pytest.mark.parametrize("data_dir", ['/data/"; touch injected; "', "/data/$(touch injected)",
                                      "/data/`touch injected`", "/data/it's here", "/a b/c"])
def test_the_printed_prepare_command_passes_the_data_dir_through_the_shell_unchanged(data_dir):
    command = tfds_tasks.prepare_command("cifar10", data_dir)
    program, flag, code = shlex.split(command)
    assert (program, flag) == ("python", "-c")
    call = ast.parse(code).body[1].value  # tfds.builder(...).download_and_prepare(...)
    builder = call.func.value
    assert ast.literal_eval(builder.keywords[0].value) == data_dir
    echoed = subprocess.run(["bash", "-c", command.replace("python", "printf %s", 1)],
                            capture_output=True, text=True, check=True, cwd="/tmp")
    assert echoed.stdout == "-c" + code


def test_missing_tfds_dataset_raises_data_not_found_with_the_build_command(tfds, tmp_path):
    task = tasks.get("cifar10", data_dir=str(tmp_path))
    with pytest.raises(tasks.DataNotFoundError) as info:
        task.data()
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "\n" not in message
    assert tfds_tasks.prepare_command("cifar10", tmp_path) in message
    assert f'data_dir="{tmp_path}"' in message and "download_and_prepare(" in message
    assert "download=True" in message and "pip install 'symopt-jax[tfds]'" in message
    assert not list(tmp_path.iterdir())  # nothing was downloaded or created


def test_tfds_data_dir_defaults_to_the_environment_variable(tfds, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(tasks.DataNotFoundError, match=f'data_dir="{tmp_path}"'):
        tasks.get("mnist").data()


def test_tfds_data_dir_follows_the_environment_variable_when_the_task_was_built_before(
        tfds, tmp_path, monkeypatch):
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    task = tasks.get("mnist")  # the registry caches it: the same object comes back below
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert tasks.get("mnist") is task
    with pytest.raises(tasks.DataNotFoundError, match=f'data_dir="{tmp_path}"'):
        task.data()


def test_tfds_tasks_without_tensorflow_datasets_raise_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    hint = r"pip install 'symopt-jax\[tfds\]'"
    with pytest.raises(tasks.MissingDependencyError, match=hint) as info:
        tasks.get("mnist", data_dir=str(tmp_path)).data()
    assert isinstance(info.value, ImportError)


def test_tfds_specs_match_the_tfds_feature_metadata(tfds, tmp_path):
    for name, spec in tfds_tasks.SPECS.items():
        features = tfds.builder(spec.tfds_name, data_dir=str(tmp_path)).info.features
        assert features["label"].num_classes == spec.num_classes, name
        assert features["image"].shape[-1] == spec.image_shape[-1], name


@pytest.mark.parametrize("file_format", ["array_record", "tfrecord"])
def test_tfds_loads_a_prepared_dataset_in_either_file_format(
    tfds, tmp_path, monkeypatch, file_format
):
    """Real files, prepared offline from TFDS's ``DummyMnist`` (20 examples per split).

    Preparing needs TensorFlow (TFDS encodes the images with it), and so
    does reading TFRecords; the ``array_record`` files are read without it.
    """
    pytest.importorskip("tensorflow")
    from tensorflow_datasets.testing import test_utils

    test_utils.DummyMnist(data_dir=tmp_path).download_and_prepare(file_format=file_format)
    spec = tfds_tasks.TfdsSpec("dummy_mnist", 10, (28, 28, 1), "cnn")
    monkeypatch.setitem(tfds_tasks.SPECS, "dummy_mnist", spec)
    data = tfds_tasks.load_tfds("dummy_mnist", str(tmp_path), 100, 3, 100, 0)
    assert {s: data[s]["x"].shape for s in data} == {
        "train": (17, 28, 28, 1),
        "val": (3, 28, 28, 1),
        "test": (20, 28, 28, 1),
    }
    np.testing.assert_array_equal(np.bincount(data["test"]["y"], minlength=10), 2)
