"""The test comparisons kept across searches: reused exactly where nothing changed."""

from __future__ import annotations

import pathlib

import ml_collections
import pytest

from symopt import comparison_cache, heldout, run, tasks, zoo
from symopt import config as config_lib

MULTIPLIERS = (0.3, 1.0, 3.0)
SETTINGS = {"quadratic": {"steps": 10, "seeds": 2, "options": {}}}


def _cache(directory, settings=None, multipliers=MULTIPLIERS, strategy="auto"):
    return comparison_cache.ComparisonCache(directory, task_settings=settings or SETTINGS,
                                            multipliers=multipliers, strategy=strategy)


def _counting_evaluate_task(monkeypatch) -> list[list[str]]:
    trained: list[list[str]] = []
    real = heldout.evaluate_task

    def counting(optimizers, *args, **kwargs):
        trained.append(list(optimizers))
        return real(optimizers, *args, **kwargs)

    monkeypatch.setattr(heldout, "evaluate_task", counting)
    return trained


def test_a_second_search_trains_only_its_winner_and_gets_the_same_comparisons(
        tmp_path, monkeypatch):
    task = tasks.get("quadratic", steps=10, seeds=2)
    trained = _counting_evaluate_task(monkeypatch)
    cache, logged = _cache(tmp_path), []
    first = heldout.evaluate_all({"best": zoo.get("adam")}, ["adam", "lion"], [task],
                                 MULTIPLIERS, cache=cache, log=logged.append)
    second = heldout.evaluate_all({"best": zoo.get("sgd")}, ["adam", "lion"], [task],
                                  MULTIPLIERS, cache=_cache(tmp_path), log=logged.append)
    assert trained == [["best", "adam", "lion"], ["best"]]
    assert [r.optimizer for r in second] == ["best", "adam", "lion"]  # the order of a fresh run
    assert second[1:] == first[1:]
    assert second[0] != first[0]  # the winner itself is never taken from the cache
    assert any(line.startswith("test: 1 optimizers") and "adam, lion as measured before" in line
               for line in logged), logged


@pytest.mark.parametrize("change", ["settings", "multipliers", "strategy", "source"])
def test_a_comparison_measured_under_other_conditions_is_measured_again(
        tmp_path, monkeypatch, change):
    task = tasks.get("quadratic", steps=10, seeds=2)
    heldout.evaluate_all({"best": zoo.get("adam")}, ["adam"], [task], MULTIPLIERS,
                         cache=_cache(tmp_path), log=lambda _: None)
    if change == "source":  # an edit to any file of the package
        monkeypatch.setattr(comparison_cache, "source_digest", lambda: "edited")
    other = _cache(
        tmp_path,
        settings={"quadratic": {"steps": 10, "seeds": 2, "options": {"dim": 3}}}
        if change == "settings" else None,
        multipliers=(0.1, 1.0, 10.0) if change == "multipliers" else MULTIPLIERS,
        strategy="loop" if change == "strategy" else "auto")
    assert other.get("quadratic", "adam") is None
    assert _cache(tmp_path).get("quadratic", "adam") is not None or change == "source"


def test_the_source_digest_is_the_code_the_process_imported_not_the_files_now(
        tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    before = comparison_cache.package_digest(package)
    (package / "a.py").write_text("x = 2\n")
    assert comparison_cache.package_digest(package) != before  # any edit moves the digest
    imported = comparison_cache.source_digest()
    installed = pathlib.Path(comparison_cache.__file__).resolve().parent
    assert imported == comparison_cache.package_digest(installed)

    def no_reading(self):
        raise AssertionError(f"read {self} after import")

    # A search that edits its package's files mid-run keeps its key: nothing is read again.
    monkeypatch.setattr(pathlib.Path, "read_bytes", no_reading)
    assert comparison_cache.source_digest() == imported


def test_an_unreadable_entry_is_measured_again_and_rewritten(tmp_path, monkeypatch):
    task = tasks.get("quadratic", steps=10, seeds=2)
    heldout.evaluate_all({"best": zoo.get("adam")}, ["adam"], [task], MULTIPLIERS,
                         cache=_cache(tmp_path), log=lambda _: None)
    (entry,) = tmp_path.glob("quadratic.adam.*.json")
    entry.write_text('{"optimizer": "adam", "task": ')  # a write cut short
    trained = _counting_evaluate_task(monkeypatch)
    heldout.evaluate_all({"best": zoo.get("adam")}, ["adam"], [task], MULTIPLIERS,
                         cache=_cache(tmp_path), log=lambda _: None)
    assert trained == [["best", "adam"]]
    assert _cache(tmp_path).get("quadratic", "adam") is not None
    assert not list(tmp_path.glob("*.tmp"))


def test_a_users_own_task_is_never_cached(tmp_path):
    cache = _cache(tmp_path, settings={"mymodule:make_task": {}})
    result = heldout.Result(optimizer="adam", task="mymodule:make_task", learning_rate=1e-3,
                            tuned_learning_rate=1e-3, found=(1.0,), tuned=(1.0,),
                            found_diverged=0, tuned_diverged=0)
    cache.put(result)
    assert cache.get("mymodule:make_task", "adam") is None
    assert not list(tmp_path.iterdir())


def test_a_config_names_the_cache_and_the_test_tasks_settings_key_it(tmp_path):
    config = config_lib.default_config()
    assert run.comparison_cache_of(config) is None  # off by default
    config.tasks.test = "quadratic,logistic"
    config.tasks.options = ml_collections.ConfigDict({"logistic": {"steps": 20}})
    config.test.comparison_cache = str(tmp_path / "comparisons")
    cache = run.comparison_cache_of(config)
    assert cache.cacheable("quadratic") and cache.cacheable("logistic")
    config.tasks.options = ml_collections.ConfigDict({"logistic": {"steps": 30}})
    other = run.comparison_cache_of(config)
    assert other._path("logistic", "adam") != cache._path("logistic", "adam")
    assert other._path("quadratic", "adam") == cache._path("quadratic", "adam")
    assert config_lib.resumable("test.comparison_cache")
