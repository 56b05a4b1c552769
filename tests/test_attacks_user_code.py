"""Attacks on a user's own task code (issue 24, section 4 and the last bullet of 8).

Whatever the user's module, factory or model raises is one
:class:`symopt.tasks.base.UserCodeError` naming the task and the phase
(``import``, ``build``, ``forward``, ``gradient``), with the original
exception as its cause; the command line prints it as one line with exit 1
(the traceback with ``SYMOPT_TRACEBACK=1``). ``from_arrays`` refuses
complex, out-of-range and ragged arrays naming the split, and the name given
to ``from_arrays`` is the one reports show for a ``module:function`` task.

The models are tiny and the checks trace them (nothing trains); only the
command-line test starts a process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from symopt import cli, measure, tasks
from symopt.tasks.base import TRACEBACK_ENV, UserCodeError

from helpers import ROOT

FEATURES = 4


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32)


SPLITS = {"train": _arrays(16, 0), "val": _arrays(8, 1), "test": _arrays(8, 2)}


def _task(model: object, splits: dict | None = None, loss: str = "cross_entropy") -> tasks.Task:
    return tasks.from_arrays("cancer", model, SPLITS if splits is None else splits, loss=loss,
                             steps=5, batch_size=4, seeds=1)


def _raised(call, phase: str) -> UserCodeError:
    """The UserCodeError ``call()`` raises: phase ``phase``, one line, with its cause."""
    with pytest.raises(UserCodeError) as info:
        call()
    error = info.value
    assert error.phase == phase and "\n" not in str(error)
    assert error.__cause__ is not None
    return error


# --------------------------------------------------------------------------
# The user's module and factory, through the ``module:function`` lookup.


MODULE = textwrap.dedent("""
    import numpy as np
    from flax import linen as nn
    import symopt

    def splits():
        x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int32)
        return {"train": (x, y), "val": (x, y), "test": (x, y)}

    def make_task(steps=5, batch_size=4, seeds=1):
        return symopt.tasks.from_arrays("cancer", nn.Dense(2), splits(), loss="cross_entropy",
                                        steps=steps, batch_size=batch_size, seeds=seeds)

    def raises(steps=5, batch_size=4, seeds=1):
        return {"rows": 16}["columns"]

    def ragged(steps=5, batch_size=4, seeds=1):
        x, y = splits()["train"]
        rows = [list(r) for r in x]
        rows[3] = rows[3][:2]
        return symopt.tasks.from_arrays(
            "cancer", nn.Dense(2), {**splits(), "train": (rows, y)}, loss="cross_entropy",
            steps=steps, batch_size=batch_size, seeds=seeds)
""")


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """The current directory, as a user's would be, and a unique module-name prefix."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.curdir)])
    return tmp_path, "user_code_" + re.sub(r"\W", "_", tmp_path.name)


def _module(user_dir, suffix: str, text: str) -> str:
    directory, prefix = user_dir
    name = f"{prefix}_{suffix}"
    (directory / f"{name}.py").write_text(text)
    return name


def test_a_factory_that_raises_is_a_user_code_error_at_build(user_dir):
    name = f"{_module(user_dir, 'tasks', MODULE)}:raises"
    error = _raised(lambda: tasks.get(name), "build")
    assert str(error) == f"task {name!r} failed at build: KeyError: 'columns'"
    assert isinstance(error.__cause__, KeyError)


def test_a_module_with_a_syntax_error_is_a_user_code_error_at_import(user_dir):
    module = _module(user_dir, "syntax", "def make_task(:\n    pass\n")
    error = _raised(lambda: tasks.get(f"{module}:make_task"), "import")
    assert re.fullmatch(rf"task '{module}:make_task' failed at import: SyntaxError: .*"
                        rf"\({module}\.py, line 1\)", str(error))


def test_a_module_that_raises_at_import_is_a_user_code_error_at_import(user_dir):
    module = _module(user_dir, "raising", "import numpy\nSCALE = 1 / 0\n")
    error = _raised(lambda: tasks.options(f"{module}:make_task"), "import")
    assert str(error).endswith("failed at import: ZeroDivisionError: division by zero")


def test_a_module_whose_own_import_is_missing_is_a_user_code_error_not_an_unknown_task(user_dir):
    module = _module(user_dir, "needs", "import no_such_dependency_xyz\n")
    error = _raised(lambda: tasks.exists(f"{module}:make_task"), "import")
    assert "No module named 'no_such_dependency_xyz'" in str(error)


def test_a_registered_factory_that_raises_is_a_user_code_error_at_build():
    def factory(steps: int = 5) -> tasks.Task:
        raise RuntimeError("the data server is down")

    tasks.register("user_code_raising", factory)
    try:
        error = _raised(lambda: tasks.get("user_code_raising"), "build")
    finally:
        tasks.unregister("user_code_raising")
    assert str(error) == ("task 'user_code_raising' failed at build: "
                          "RuntimeError: the data server is down")


# --------------------------------------------------------------------------
# The user's model.


class WhileLoop(nn.Module):
    """Iterates with a dynamic trip count: the forward pass traces, the gradient cannot."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(2)(x)
        return jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, 0.5 * c[1]), (0, h))[1]


def test_a_model_whose_gradient_cannot_be_traced_is_a_user_code_error_at_gradient():
    error = _raised(lambda: _task(WhileLoop()), "gradient")
    assert str(error).startswith("task 'cancer' failed at gradient: ValueError: Reverse-mode "
                                 "differentiation does not work for lax.while_loop")


def test_a_model_that_fails_in_its_forward_pass_is_a_user_code_error_at_forward():
    error = _raised(lambda: _task(nn.Embed(5, 3)), "forward")  # float inputs to an Embed
    assert str(error).startswith("task 'cancer' failed at forward: ValueError: ")


def test_a_model_function_that_raises_is_a_user_code_error_at_build():
    def model(rngs: nnx.Rngs) -> nnx.Module:
        return nnx.Linear(FEATURES, 2, rngs=rngs, bogus=1)

    error = _raised(lambda: _task(model), "build")
    assert "TypeError" in str(error) and "bogus" in str(error)


def test_a_user_code_error_from_from_arrays_passes_the_lookup_unwrapped(user_dir):
    text = MODULE.replace("nn.Dense(2), splits()", "nn.Embed(5, 2), splits()", 1)
    name = f"{_module(user_dir, 'embed', text)}:make_task"
    error = _raised(lambda: tasks.get(name), "forward")
    assert error.task == "cancer"


# --------------------------------------------------------------------------
# from_arrays refuses arrays it would silently change.


def _with(split: str, part: int, value: object) -> dict:
    pair = list(SPLITS[split])
    pair[part] = value
    return {**SPLITS, split: tuple(pair)}


x_val, y_val = SPLITS["val"]
ragged_rows = [list(r) for r in x_val]
ragged_rows[5] = ragged_rows[5][:3]
REFUSED = [
    ("complex x", dict(splits=_with("train", 0, SPLITS["train"][0] * (1 + 1j))),
     r"splits\['train'\] x has dtype complex\d+; want real numbers"),
    ("complex mse y", dict(splits=_with("test", 1, SPLITS["test"][1] * 1j), loss="mse"),
     r"splits\['test'\] y has dtype complex\d+; mse wants real numbers"),
    ("int64 token ids beyond int32",
     dict(splits={s: (np.where(x > 0, 2**40, 1).astype(np.int64), y)
                  for s, (x, y) in SPLITS.items()}),
     r"splits\['train'\] x has values from 1 to 1099511627776, outside the range of int32"),
    ("float64 beyond float32", dict(splits=_with("val", 0, x_val.astype(np.float64) * 1e300)),
     r"splits\['val'\] x has values from .* outside the range of float32"),
    ("int64 labels beyond int32", dict(splits=_with("val", 1, y_val.astype(np.int64) + 2**33)),
     r"splits\['val'\] y has values from 8589934592 to 8589934593, outside the range of int32"),
    ("ragged list", dict(splits=_with("val", 0, ragged_rows)),
     r"splits\['val'\] x is ragged: its rows differ in shape \(setting an array element"),
    ("ragged object array",
     dict(splits=_with("val", 0, np.array([np.asarray(r) for r in ragged_rows], dtype=object))),
     r"splits\['val'\] x is ragged: its rows differ in shape"),
]


@pytest.mark.parametrize("changes,message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_from_arrays_refuses_complex_out_of_range_and_ragged_arrays_naming_the_split(
        changes, message):
    with pytest.raises(ValueError, match=r"^from_arrays\('cancer'\): " + message) as info:
        _task(nn.Dense(2), **changes)
    assert "\n" not in str(info.value)


def test_a_ragged_split_through_the_lookup_is_one_line_naming_the_split(user_dir):
    name = f"{_module(user_dir, 'ragged', MODULE)}:ragged"
    error = _raised(lambda: tasks.get(name), "build")
    assert "from_arrays('cancer'): splits['train'] x is ragged" in str(error)


# --------------------------------------------------------------------------
# The name given to from_arrays.


def test_a_module_function_task_is_shown_by_the_name_given_to_from_arrays(user_dir):
    name = f"{_module(user_dir, 'named', MODULE)}:make_task"
    task = tasks.get(name)
    assert task.name == name  # the key of archives and configs
    assert task.label == "cancer"  # what reports show


# --------------------------------------------------------------------------
# The command line.


# slow: it starts the program twice; by default a user's code failing is one line
# naming the task and phase in process (above) and symopt.main's one-line exit 1 is
# checked by tests/test_cli.py::test_a_workdir_that_is_a_file_is_one_line_and_exit_code_1.
@pytest.mark.slow
def test_the_command_line_prints_a_user_code_error_as_one_line_or_with_its_traceback(user_dir):
    directory, _ = user_dir
    name = f"{_module(user_dir, 'cli', MODULE)}:raises"
    command = [sys.executable, "-m", "symopt.main",
               f"--config={os.path.join(ROOT, 'experiments', 'digits.py')}",
               f"--workdir={directory / 'run'}", f"--config.tasks.search={name}",
               "--compilation_cache_dir="]
    environ = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    out = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=300,
                         env=environ)
    assert out.returncode == cli.RUN_ERROR, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        f"symopt.main: error: task {name!r} failed at build: KeyError: 'columns'"]
    traced = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=300,
                            env={**environ, TRACEBACK_ENV: "1"})
    lines = traced.stderr.strip().splitlines()
    assert traced.returncode == cli.RUN_ERROR
    assert lines[0] == "Traceback (most recent call last):", traced.stderr[-2000:]
    assert 'return {"rows": 16}["columns"]' in traced.stderr
    assert lines[-1] == out.stderr.strip()


class NaNOutputs(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x) * jnp.nan


def test_a_model_whose_loss_is_nan_at_initialisation_is_named_as_such_not_the_rate():
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    task = tasks.from_arrays("cancer", NaNOutputs(), {"train": (x, y), "val": (x, y),
                             "test": (x, y)}, loss="cross_entropy", steps=3, batch_size=4, seeds=1)
    with pytest.raises(UserCodeError) as info:
        measure.tune_reference(task, [1e-3, 1e-2], "val", "loss")
    assert info.value.phase == "forward" and "\n" not in str(info.value)
    assert str(info.value).startswith("task 'cancer' failed at forward: FloatingPointError: the "
                                      "model's loss at initialisation is NaN at every seed")
