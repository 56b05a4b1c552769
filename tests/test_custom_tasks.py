"""Users' own tasks: ``module:function`` names, ``tasks.register`` and ``tasks.from_arrays``.

Tiny models on tiny arrays: the checks of ``from_arrays`` run before anything
compiles, and each trained task compiles one small program (two for the
tasks trained in the population engine).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import symopt
from symopt import evaluate, program, tasks, zoo
from symopt import run as run_lib
from symopt.archive import Archive

from helpers import tiny_config

CLASSES = 3
FEATURES = 6


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``FEATURES`` normal inputs; the label counts the positive first two."""
    x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)


SPLITS = {"train": _arrays(64, 0), "val": _arrays(32, 1), "test": _arrays(32, 2)}
TARGETS = {split: (x, 2 * x[:, 0] - x[:, 1]) for split, (x, _) in SPLITS.items()}


class LinenMLP(nn.Module):
    """No ``train`` argument: called as ``module(x)``."""

    outputs: int = CLASSES

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.outputs)(nn.relu(nn.Dense(8)(x)))


class LinenNormDropout(nn.Module):
    """Dropout on the inputs then BatchNorm: the ``train`` argument matters."""

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dropout(0.5, deterministic=not train)(x)
        x = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x))
        return nn.Dense(CLASSES)(nn.relu(x))


class NnxMLP(nnx.Module):
    """An NNX model with BatchNorm and dropout (modes set by ``train()``/``eval()``)."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(FEATURES, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(8, CLASSES, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.norm(self.hidden(self.dropout(x)))))


def _task(model=None, splits=None, **changes) -> tasks.Task:
    arguments = dict(loss="cross_entropy", steps=20, batch_size=16, seeds=2)
    arguments.update(changes)
    return tasks.from_arrays("mine", LinenMLP() if model is None else model,
                             SPLITS if splits is None else splits, **arguments)


def _trained(task: tasks.Task) -> dict:
    """One compile: init, eval before, ``task.steps`` Adam steps, eval after, per key."""
    tx = optax.adam(3e-2)

    def run(key, data):
        params, state = task.init(key)

        def step(carry, k):
            p, s, opt = carry
            (loss, s), grads = jax.value_and_grad(task.train_loss, has_aux=True)(p, s, k, data)
            updates, opt = tx.update(grads, opt, p)
            return (optax.apply_updates(p, updates), s, opt), loss

        keys = jax.random.split(key, task.steps)
        (p, s, _), losses = jax.lax.scan(step, (params, state, tx.init(params)), keys)
        return {"init": (params, state), "final": (p, s), "losses": losses,
                "before": task.eval_metrics(params, state, data, "val"),
                "after": task.eval_metrics(p, s, data, "val")}

    keys = jax.random.split(jax.random.key(0), 2)
    return jax.jit(jax.vmap(run, in_axes=(0, None)))(keys, task.data())


def _changed(a, b) -> bool:
    return any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                      strict=True))


# --------------------------------------------------------------------------
# from_arrays: models and losses.


def test_a_linen_model_without_train_argument_trains_and_reports_accuracy():
    task = _task(LinenMLP())
    assert task.num_classes == CLASSES and task.name == "mine"
    out = _trained(task)
    assert out["init"][1] == {}
    assert set(out["after"]) == {"loss", "accuracy"}
    assert (out["after"]["loss"] < out["before"]["loss"]).all()


def test_a_linen_model_with_batchnorm_and_dropout_trains_in_the_population_engine():
    task = _task(LinenNormDropout())
    graphs = program.encode([zoo.adam(learning_rate=1e-2), zoo.sgd()])
    metrics = evaluate.evaluate(graphs, task, seeds=2)
    native = evaluate.evaluate_baseline(optax.adam, (jnp.full(1, 1e-2),), task)
    assert metrics.val_loss.shape == (2, 2) and not metrics.diverged.any()
    assert (metrics.train_loss[0] < metrics.initial_loss[0]).all()
    assert np.isfinite(metrics.test_accuracy).all()
    np.testing.assert_allclose(native.train_loss[0], metrics.train_loss[0], rtol=1e-2)


def test_linen_batch_stats_are_the_model_state_and_dropout_draws_from_the_step_key():
    one_row = {**SPLITS, "train": (SPLITS["train"][0][:1], SPLITS["train"][1][:1])}
    task = _task(LinenNormDropout(), splits=one_row)
    params, state = task.init(jax.random.key(0))
    assert set(state) == {"batch_stats"}
    data = task.data()
    keys = jax.random.split(jax.random.key(1), 2)
    losses, states = jax.jit(jax.vmap(task.train_loss, in_axes=(None, None, 0, None)))(
        params, state, keys, data)
    # Every batch repeats the one row: only dropout makes the two losses differ.
    assert not np.isclose(losses[0], losses[1])
    assert _changed(state, jax.tree.map(lambda s: s[0], states))
    evaluate_val = jax.jit(lambda p, s: task.eval_metrics(p, s, data, "val"))
    first, second = evaluate_val(params, state), evaluate_val(params, state)
    assert first["loss"] == second["loss"]


def test_an_nnx_instance_starts_every_seed_from_its_own_weights():
    model = NnxMLP(nnx.Rngs(3))
    task = _task(model)
    out = _trained(task)
    (params, state), weights = out["init"], nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for leaf, mine in zip(jax.tree.leaves(params), jax.tree.leaves(weights), strict=True):
        np.testing.assert_array_equal(leaf[0], mine)
        np.testing.assert_array_equal(leaf[1], mine)
    assert _changed(state, out["final"][1])  # BatchNorm statistics moved
    assert (out["after"]["loss"] < out["before"]["loss"]).all()


# slow: two more training programs; by default an NNX model trains
# (test_an_nnx_instance_starts_every_seed_from_its_own_weights) and a model with state
# and dropout trains in the population engine as native optax does
# (test_a_linen_model_with_batchnorm_and_dropout_trains_in_the_population_engine).
@pytest.mark.slow
def test_an_nnx_factory_draws_each_seeds_weights_and_trains_in_the_population_engine():
    task = _task(NnxMLP)
    first, _ = task.init(jax.random.key(0))
    second, _ = task.init(jax.random.key(1))
    assert _changed(first, second)
    graphs = program.encode([zoo.adam(learning_rate=1e-2), zoo.sgd()])
    metrics = evaluate.evaluate(graphs, task, seeds=2)
    native = evaluate.evaluate_baseline(optax.adam, (jnp.full(1, 1e-2),), task)
    assert not metrics.diverged.any() and np.isfinite(metrics.test_accuracy).all()
    assert (metrics.train_loss[0] < metrics.initial_loss[0]).all()
    np.testing.assert_allclose(native.train_loss[0], metrics.train_loss[0], rtol=1e-2)


def test_mse_reports_only_the_loss_and_bounds_divergence_by_the_targets_scale():
    task = _task(LinenMLP(outputs=1), splits=TARGETS, loss="mse")
    assert task.num_classes == 0
    out = _trained(task)
    assert set(out["after"]) == {"loss"}
    assert (out["after"]["loss"] < out["before"]["loss"]).all()
    scaled = {split: (x, 1000 * y) for split, (x, y) in TARGETS.items()}
    assert _task(LinenMLP(outputs=1), splits=scaled, loss="mse").loss_bound > 1e6


def test_cross_entropy_takes_a_label_per_position_and_integer_token_inputs():
    rng = np.random.default_rng(0)
    tokens = {split: (rng.integers(0, 5, (n, 4)), rng.integers(0, 5, (n, 4)))
              for split, n in (("train", 16), ("val", 8), ("test", 8))}

    class Tagger(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(5)(nn.Embed(5, 8)(x))

    task = _task(Tagger(), splits=tokens)
    assert task.num_classes == 5 and task.data()["train"]["x"].dtype == jnp.int32
    params, state = jax.eval_shape(task.init, jax.random.key(0))
    metrics = jax.eval_shape(lambda p, s, d: task.eval_metrics(p, s, d, "test"),
                             params, state, task.data())
    assert {k: v.shape for k, v in metrics.items()} == {"loss": (), "accuracy": ()}


# --------------------------------------------------------------------------
# from_arrays: bad input, one line naming the split and the array.


class Pair(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(CLASSES)(x), x


class Lazy(nnx.Module):
    """Makes a statistic on its first call: a state that appears mid-run."""

    def __init__(self, rngs: nnx.Rngs):
        self.out = nnx.Linear(FEATURES, CLASSES, rngs=rngs)

    def __call__(self, x):
        if not hasattr(self, "seen"):
            self.seen = nnx.BatchStat(jnp.zeros(()))
        return self.out(x)


def _with(split: str, part: int, value) -> dict:
    pair = list(SPLITS[split])
    pair[part] = value
    return {**SPLITS, split: tuple(pair)}


x_train, y_train = SPLITS["train"]
BAD_INPUT = [
    (dict(splits=_with("val", 1, SPLITS["val"][1][:30])),
     r"splits\['val'\] y has 30 rows but x has 32"),
    (dict(splits=_with("train", 1, y_train.astype(np.float32))),
     r"splits\['train'\] y has dtype float32; cross_entropy wants integer"),
    (dict(splits=_with("train", 1, y_train - 1)), r"splits\['train'\] y has a negative label"),
    (dict(splits=_with("test", 0, np.where(np.eye(32, FEATURES) > 0, np.nan, SPLITS["test"][0]))),
     r"splits\['test'\] x has 6 NaN or inf entries"),
    (dict(splits=_with("val", 0, np.full((32, FEATURES), "a"))),
     r"splits\['val'\] x has dtype <U1; want real numbers"),
    (dict(splits={"train": SPLITS["train"], "val": SPLITS["val"]}),
     r"splits has no 'test' split"),
    (dict(splits={**SPLITS, "holdout": SPLITS["val"]}), r"splits has unknown split 'holdout'"),
    (dict(splits={**SPLITS, "val": SPLITS["val"][0]}), r"splits\['val'\] must be a pair \(x, y\)"),
    (dict(splits=list(SPLITS.values())), r"splits must be a dict"),
    (dict(splits=_with("test", 0, SPLITS["test"][0][:, :4])),
     r"splits\['test'\] x has rows of shape \(4,\) but splits\['train'\] x has \(6,\)"),
    (dict(splits=_with("val", 0, x_train[:0])), r"splits\['val'\] x is empty"),
    (dict(splits=_with("train", 1, np.where(y_train == 2, 7, y_train))),
     r"splits\['train'\] y has label 7 but the model outputs 3 logits"),
    (dict(splits=TARGETS | {"val": (TARGETS["val"][0], TARGETS["val"][1] * np.inf)}, loss="mse"),
     r"splits\['val'\] y has 32 NaN or inf entries"),
    (dict(splits=TARGETS, loss="mse"),
     r"the model outputs \(3,\) per example but splits\['train'\] y"),
    (dict(splits={split: (x, np.stack([y, y], axis=1)) for split, (x, y) in SPLITS.items()}),
     r"the model outputs \(3,\) per example; cross_entropy wants logits \(2, 'classes'\)"),
    (dict(model=LinenMLP(outputs=1)), r"splits\['train'\] y has label 2 but the model outputs 1"),
    (dict(loss="hinge"), r"loss must be one of cross_entropy, mse"),
    (dict(steps=0), r"steps must be a positive integer, got 0"),
    (dict(batch_size=0), r"batch_size must be a positive integer, got 0"),
    (dict(seeds=0), r"seeds must be a positive integer"),
    (dict(eval_batch_size=0), r"eval_batch_size must be a positive integer"),
    (dict(model=object()), r"model must be a linen Module, an nnx Module or a function"),
    (dict(model=Pair()), r"the model must return one array, got tuple"),
    (dict(model=Lazy(nnx.Rngs(0))), r"the model's state .* changes structure in training"),
    (dict(model=lambda rngs: 3), r"model\(rngs\) must return an nnx.Module, got int"),
]


@pytest.mark.parametrize("changes,message", BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_is_a_one_line_error_naming_the_task_and_array(changes, message):
    with pytest.raises(ValueError, match=r"from_arrays\('mine'\): " + message) as info:
        _task(**changes)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model,phase", [
    (nn.Embed(5, 3), "forward"),  # float inputs
    (lambda rngs: nnx.Linear(4, 3, rngs=rngs), "forward"),  # 4 features, the data has 6
    (lambda rngs: nnx.Linear(FEATURES, 3, rngs=rngs, bogus=1), "build"),
])
def test_a_model_that_raises_is_a_user_code_error_naming_the_task_and_phase(model, phase):
    with pytest.raises(tasks.UserCodeError, match=rf"^task 'mine' failed at {phase}: ") as info:
        _task(model=model)
    assert info.value.phase == phase and "\n" not in str(info.value)


def test_a_batch_larger_than_the_training_split_is_sampled_with_replacement():
    task = _task(batch_size=1000)
    params, state = task.init(jax.random.key(0))
    loss, _ = jax.eval_shape(task.train_loss, params, state, jax.random.key(1), task.data())
    assert loss.shape == ()


# --------------------------------------------------------------------------
# module:function names.


MODULE = textwrap.dedent("""
    import numpy as np
    from flax import linen as nn
    import symopt

    def splits():
        x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int32)
        return {"train": (x, y), "val": (x, y), "test": (x, y)}

    def make_task(steps=30, batch_size=8, seeds=2, width=4):
        return symopt.tasks.from_arrays("inner", nn.Dense(2), splits(), loss="cross_entropy",
                                        steps=steps, batch_size=batch_size, seeds=seeds)

    def anything(**options):
        return make_task(steps=options.get("steps", 5))

    def needs(size, steps=3):
        return make_task(steps=steps)

    def not_a_task(steps=1):
        return 42

    CONSTANT = 3
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module written to the current directory (as a user's would be): its name."""
    name = "user_tasks_" + re.sub(r"\W", "_", tmp_path.name)
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.curdir)])
    return name


def test_a_module_function_name_imports_from_the_working_directory_and_names_the_task(
        user_module):
    name = f"{user_module}:make_task"
    assert tasks.exists(name) and name not in tasks.names()
    assert tasks.options(name) == {"steps": 30, "batch_size": 8, "seeds": 2, "width": 4}
    task = tasks.get(name, steps=7, width=2)
    assert task.name == name and task.steps == 7 and task.num_classes == 2
    assert task.label == "inner"  # the name its factory gave it, for reports
    assert tasks.get(name, steps=7, width=2) is task  # cached like the registry's tasks


def test_a_reloaded_module_builds_its_task_afresh(user_module, tmp_path):
    before = tasks.get(f"{user_module}:make_task")
    # Another file size, so that a .pyc of the same second is not taken for it.
    (tmp_path / f"{user_module}.py").write_text(MODULE.replace("steps=30", "steps=400"))
    importlib.reload(sys.modules[user_module])
    assert before.steps == 30 and tasks.get(f"{user_module}:make_task").steps == 400


def test_a_function_with_kwargs_accepts_any_option(user_module):
    assert tasks.options(f"{user_module}:anything") == {}
    assert tasks.get(f"{user_module}:anything", steps=11, colour="red").steps == 11


@pytest.mark.parametrize("suffix,overrides,message", [
    (":make_task", {"depth": 3}, r"has no option 'depth'; options: steps, batch_size"),
    (":missing", {}, r"'user_tasks_\w+' has no 'missing'"),
    (":CONSTANT", {}, r"'CONSTANT' is a int, not a function returning a Task"),
    (":not_a_task", {}, r"the factory returned int, not a symopt.tasks.Task"),
    (":needs", {}, r"needs option 'size'"),
    (":", {}, r"want module:function"),
])
def test_a_bad_module_function_name_is_a_one_line_error_naming_the_task(
        user_module, suffix, overrides, message):
    name = user_module + suffix
    with pytest.raises(ValueError, match=f"task '{name}'.*{message}") as info:
        tasks.get(name, **overrides)
    assert "\n" not in str(info.value)


def test_a_built_in_tasks_bad_option_stays_a_value_error_not_a_user_code_error():
    with pytest.raises(ValueError, match="param_scale must be positive") as info:
        tasks.get("regression", param_scale=-1.0)
    assert not isinstance(info.value, tasks.UserCodeError)


def test_an_unimportable_module_names_the_task_and_the_import_error(user_module):
    with pytest.raises(ValueError, match=r"task 'no_such_module_xyz:f': cannot import "
                                         r"'no_such_module_xyz'.*No module named") as info:
        tasks.get("no_such_module_xyz:f")
    assert "\n" not in str(info.value)
    assert not tasks.exists("no_such_module_xyz:f") and not tasks.exists("no_such_task")


# --------------------------------------------------------------------------
# register.


def tiny_task(steps: int = 20, batch_size: int = 16, seeds: int = 1) -> tasks.Task:
    """A factory for the registry: options are its keyword parameters."""
    return tasks.from_arrays("tiny", LinenMLP(), SPLITS, loss="cross_entropy", steps=steps,
                             batch_size=batch_size, seeds=seeds)


@pytest.fixture
def registered():
    """``tiny_task`` registered for the test's length: its name."""
    tasks.register("custom_tiny", tiny_task)
    yield "custom_tiny"
    tasks.unregister("custom_tiny")


def test_a_registered_factory_is_listed_and_builds_a_task_named_after_it(registered):
    assert registered in tasks.names() and tasks.exists(registered)
    assert tasks.options(registered) == {"steps": 20, "batch_size": 16, "seeds": 1}
    task = tasks.get(registered, steps=5)
    assert task.name == registered and task.steps == 5 and task.label == registered


@pytest.mark.parametrize("name", ["", "a:b", "a,b", "a+b", "a b", "tab\tname"])
def test_a_name_with_a_config_separator_cannot_be_registered(name):
    with pytest.raises(ValueError, match="must be non-empty, without ':', ',', '\\+'"):
        tasks.register(name, tiny_task)


def test_registering_a_taken_name_needs_replace_and_unregister_restores_a_built_in(registered):
    with pytest.raises(ValueError, match="'custom_tiny' is already registered; pass replace"):
        tasks.register(registered, tiny_task)
    with pytest.raises(ValueError, match="'digits_mlp' is already registered"):
        tasks.register("digits_mlp", tiny_task)
    tasks.register("digits_mlp", tiny_task, replace=True)
    try:
        assert tasks.options("digits_mlp") == tasks.options(registered)
    finally:
        tasks.unregister("digits_mlp")
    assert "hidden" in tasks.options("digits_mlp")
    with pytest.raises(ValueError, match="'digits_mlp' was not registered"):
        tasks.unregister("digits_mlp")


def test_a_factory_must_be_callable():
    with pytest.raises(ValueError, match="the factory must be callable"):
        tasks.register("custom_not_callable", 42)
    assert "custom_not_callable" not in tasks.names()


def _search_config(task: str):
    config = tiny_config()
    config.search.generations = 1  # a search on the task, whatever its length
    config.search.population_size = 4
    config.evaluation.reference_lr_multipliers = (1.0,)  # Adam at one rate: no grid to extend
    config.tasks.search = task
    config.tasks.options = {}
    return config


# slow: a search; by default a registered factory builds its task
# (test_a_registered_factory_is_listed_and_builds_a_task_named_after_it) and a user's
# task searches (test_a_module_function_task_runs_a_search_shown_by_its_factorys_name).
@pytest.mark.slow
def test_a_registered_task_runs_a_search(registered, tmp_path):
    result = run_lib.run(_search_config(registered), tmp_path, log=lambda line: None)
    with Archive.open(result.workdir) as archive:
        assert archive.get_meta("baseline")[registered] > 0
        assert any(registered in r.metrics for r in archive.records(status="evaluated"))


def test_a_module_function_task_runs_a_search_shown_by_its_factorys_name(user_module, tmp_path):
    name = f"{user_module}:make_task"  # from_arrays("inner", ...): the archive keys it by name
    lines: list[str] = []
    result = run_lib.run(_search_config(name), tmp_path / "run", log=lines.append)
    with Archive.open(result.workdir) as archive:
        assert archive.get_meta("baseline")[name] > 0
    shown = "\n".join(lines) + open(os.path.join(result.workdir, "summary.md")).read()
    assert name not in shown, "reports show the title the user gave the task"
    assert lines[0].startswith("reference: tuning Adam") and lines[0].endswith(" on inner ...")
    banner = next(line for line in lines if line.startswith("search: "))
    assert ", tasks inner (" in banner
    assert "Search tasks: inner; " in shown and "| lr x | inner | equation |" in shown


# Under `pytest -m slow`: by default a module function's task searches and is shown
# by its title (test_a_module_function_task_runs_a_search_shown_by_its_factorys_name)
# and experiments/own_task.py is validated and built
# (tests/test_run.py::test_every_experiment_config_is_valid_and_builds).
@pytest.mark.slow
def test_the_readme_example_config_searches_on_its_own_task_from_the_command_line(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "symopt.main", "--config=experiments/own_task.py",
         f"--workdir={tmp_path}", "--config.search.generations=1",
         "--config.search.population_size=4", "--config.tasks.steps=20",
         "--config.evaluation.reference_lr_multipliers=(1.0,)", "--compilation_cache_dir="],
        cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert ", tasks wine (20 steps, " in out.stdout  # from_arrays("wine", ...): its title
    assert "experiments.own_task:make_task" not in out.stdout
    assert "(Adam at lr 0.001, untuned = 1); " in out.stdout  # one reference rate: untuned
    assert symopt.load(tmp_path / "best.json")
