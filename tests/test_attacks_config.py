"""Issue 24's config attacks: values that passed validation and then crashed or
stalled, programs too large for memory, what "fitness 1.0" means, and error
lines that mangled paths or echoed a megabyte.

Each config value is refused by :func:`symopt.config.validate` in one line
naming its key (the command line turns that into exit code 2), and a
program that cannot fit the devices' memory is refused before it compiles
(:mod:`symopt.budget`, with the memory figure injected so the tests stay
cheap)."""

from __future__ import annotations

import ast
import math
import shlex
import subprocess
import sys
import types

import pytest

from symopt import budget, cli, evaluate, tasks, zoo
from symopt import config as config_lib
from symopt.program import ProgramShape
from symopt.tasks import tfds_tasks

from helpers import ROOT, tiny_config


def _refused(config, key: str) -> str:
    with pytest.raises(config_lib.ConfigError) as info:
        config_lib.validate(config)
    message = str(info.value)
    assert message.startswith(f"config.{key}:"), message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("key", ["evaluation.lr_multipliers",
                                 "evaluation.reference_lr_multipliers"])
@pytest.mark.parametrize("multipliers", [(1.0, 1e308), (1.0, 1e-320)])
def test_multipliers_whose_rates_leave_the_valid_range_are_refused_naming_the_key(key, multipliers):
    config = tiny_config()
    section, name = key.split(".")
    config[section][name] = multipliers
    assert "outside the valid learning rates" in _refused(config, key)


@pytest.mark.parametrize("key", ["test.lr_multipliers", "transfer.lr_multipliers"])
def test_sweep_multipliers_whose_extension_steps_overflow_are_refused(key):
    config = tiny_config()
    section, name = key.split(".")
    config[section][name] = (1.0, 1e12)  # four steps of 1e12 past the top edge: 1e60
    assert "steps past the grid's edges" in _refused(config, key)


def test_the_default_and_the_published_multiplier_grids_are_accepted():
    config = tiny_config()
    config.evaluation.lr_multipliers = (0.1, 0.3, 1.0, 3.0, 10.0)
    config.evaluation.reference_lr_multipliers = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    config_lib.validate(config)
    config_lib.validate(config_lib.default_config())


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_non_finite_simplicity_tolerance_is_refused_before_the_search(value):
    config = tiny_config()
    config.evaluation.simplicity_tolerance = value
    _refused(config, "evaluation.simplicity_tolerance")


def test_an_infinite_reference_learning_rate_is_refused():
    config = tiny_config()
    config.evaluation.reference_learning_rate = math.inf
    _refused(config, "evaluation.reference_learning_rate")


@pytest.mark.parametrize("key, value", [
    ("tasks.steps", 2_000_000_000),
    ("tasks.seeds", 100_000),
    ("search.population_size", 100_000_000),
    ("evaluation.chunk_size", 100_000),
    ("tasks.batch_size", 100_000),
    ("elimination.seeds", 100_000),
    ("test.steps", 2_000_000_000),
    ("transfer.batch_size", 100_000),
])
def test_sizes_that_would_exhaust_memory_or_stall_are_refused_naming_the_key(key, value):
    config = tiny_config()
    section, name = key.split(".")
    config[section][name] = value
    assert "must be <= " in _refused(config, key)


# slow: it starts the program; by default the refusal is checked in process (above)
# and symopt.main's one-line exit 2 on a config error by
# tests/test_cli.py::test_an_unknown_config_key_is_one_line_and_exit_code_2.
@pytest.mark.slow
def test_a_refused_multiplier_on_the_command_line_is_one_line_and_exit_code_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "symopt.main", "--compilation_cache_dir=",
         "--config=experiments/digits.py", f"--workdir={tmp_path / 'run'}",
         "--config.evaluation.lr_multipliers=(1.0, 1e308)"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == cli.USAGE_ERROR, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.evaluation.lr_multipliers" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


# --------------------------------------------------------------------------
# The memory of the first program.


def _task(**options) -> tasks.Task:
    return tasks.get("digits_mlp", seeds=2, steps=5, **options)


def test_a_program_over_the_memory_is_refused_in_one_line_before_it_compiles(monkeypatch):
    monkeypatch.setattr(budget, "available", lambda devices=None: (1 << 20, False))
    compiled = []
    monkeypatch.setattr(evaluate, "step_tables", lambda *a: compiled.append(a))
    with pytest.raises(budget.OverBudget, match=r"^config: training \d+ runs") as info:
        evaluate.evaluate_graphs([zoo.adam()] * 4, _task(), shape=ProgramShape(), chunk_size=4)
    assert "\n" not in str(info.value) and "evaluation.chunk_size" in str(info.value)
    assert compiled == []  # refused before its tables (and its compile)


def test_the_reference_program_over_the_memory_is_refused_too(monkeypatch):
    import jax.numpy as jnp
    import optax

    monkeypatch.setattr(budget, "available", lambda devices=None: (1 << 20, True))
    with pytest.raises(budget.OverBudget, match="each device's memory"):
        evaluate.evaluate_baseline(optax.adam, (jnp.asarray([1e-3, 1e-2]),), _task())


def test_a_program_near_the_memory_is_warned_of_once_with_its_estimate():
    task = _task()
    found = budget.estimate(task, 8, 4)
    memory = (int(found.total / 0.8), False)
    with pytest.warns(budget.MemoryWarning, match=r"needs about .* GiB, of .* GiB"):
        budget.check(task, 8, 4, devices=[None], memory=memory)
    with _no_warning():
        budget.check(task, 8, 4, devices=[None], memory=memory)  # once per program


def test_a_program_well_within_the_memory_passes_silently():
    task = _task()
    with _no_warning():
        found = budget.check(task, 8, 4, devices=[None], memory=(1 << 40, False))
    assert found.total > 0


def test_the_estimate_grows_with_runs_steps_batch_and_states():
    small = budget.estimate(_task(), 4, 2)
    assert budget.estimate(_task(), 8, 2).total > small.total
    assert budget.estimate(_task(), 4, 6).total > small.total
    assert budget.estimate(tasks.get("digits_mlp", seeds=2, steps=5000), 4, 2).total > small.total
    assert budget.estimate(_task(batch_size=512), 4, 2).total > small.total
    assert budget.estimate(_task(), 8, 2, devices=2).per_device < small.per_device * 2


def _no_warning():
    import warnings

    class _Context:
        def __enter__(self):
            self.catch = warnings.catch_warnings()
            self.catch.__enter__()
            warnings.simplefilter("error", budget.MemoryWarning)

        def __exit__(self, *exc):
            return self.catch.__exit__(*exc)

    return _Context()


# --------------------------------------------------------------------------
# What fitness 1.0 is.


def test_the_default_config_says_its_fitness_is_relative_to_an_untuned_adam():
    unit = config_lib.fitness_unit(config_lib.default_config())
    assert unit == "Adam at lr 0.001, untuned = 1"


def test_a_tuned_reference_says_it_is_tuned_and_over_which_rates():
    config = config_lib.default_config()
    config.evaluation.reference_lr_multipliers = (0.3, 1.0, 3.0)
    assert config_lib.fitness_unit(config) == "tuned Adam (lr 0.0003-0.003) = 1"


def test_the_config_schema_says_the_default_reference_is_untuned():
    assert "untuned" in config_lib.DESCRIPTIONS["evaluation.reference_lr_multipliers"]


# --------------------------------------------------------------------------
# Error lines: paths as given, long names cut.


def test_one_line_keeps_double_spaces_and_escapes_line_breaks():
    line = config_lib.one_line(OSError("cannot write /runs/a  b/\nc/best.json"))
    assert line == "cannot write /runs/a  b/\\nc/best.json"


def test_one_line_cuts_a_million_character_name_with_its_length():
    line = config_lib.one_line(ValueError(f"unknown operand {'x' * 1_000_000!r}"))
    assert len(line) < 2 * config_lib.MAX_RUN
    assert "…" in line and "1,000,002 characters" in line
    assert line.startswith("unknown operand 'xxx")


def test_one_line_cuts_a_long_message_of_short_words():
    line = config_lib.one_line(ValueError("ab " * 1_000_000))
    assert len(line) < 2 * config_lib.MAX_LINE


def test_one_line_reads_a_key_error_and_a_wrapped_one_without_repr_quotes():
    assert config_lib.one_line(KeyError("it's missing")) == "it's missing"
    assert config_lib.one_line(AttributeError(KeyError('no "x"\nDid you mean "y"?'))) == (
        'no "x"\\nDid you mean "y"?')


@pytest.mark.parametrize("data_dir", ["/data/two  spaces/tfds", "/data/it's/tfds",
                                      "/data/new\nline/tfds"])
def test_the_missing_tfds_data_line_names_the_exact_directory(monkeypatch, data_dir):
    class Builder:
        def __init__(self, name, data_dir):
            self.name, self.data_dir_root = name, data_dir

        def is_prepared(self):
            return False

    monkeypatch.setattr(tfds_tasks, "_import_tfds", lambda: types.SimpleNamespace(builder=Builder))
    with pytest.raises(tasks.DataNotFoundError) as info:
        tfds_tasks.load_tfds("cifar10", data_dir, 10, 10, 10, 0)
    line = config_lib.one_line(info.value)
    command = shlex.split(line.split("prepare it with: ", 1)[1])[:3]
    assert command[:2] == ["python", "-c"]
    builder = ast.parse(command[2]).body[1].value.func.value  # tfds.builder(...)
    assert ast.literal_eval(builder.keywords[0].value) == data_dir
    if "\n" not in data_dir:  # the directory the line names, as the shell reads it
        named = line.split(" is not prepared in ", 1)[1].split("; prepare it with", 1)[0]
        assert shlex.split(named) == [data_dir]
