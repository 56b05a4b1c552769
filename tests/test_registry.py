"""``symopt.registry``: values by name, and the four registries built on it."""

from __future__ import annotations

import pytest

from symopt import searchers, spaces, tasks, zoo
from symopt.registry import Registry, UnknownNameError


@pytest.fixture
def colours() -> Registry[int]:
    return Registry("colour", {"red": 1, "green": 2, "blue": 3})


def test_a_registry_reads_like_a_mapping_in_registration_order(colours):
    assert colours.names() == ["red", "green", "blue"] == list(colours)
    assert colours.get("green") == colours["green"] == 2
    assert "red" in colours and "pink" not in colours and ["red"] not in colours
    assert len(colours) == 3
    assert colours.items() == [("red", 1), ("green", 2), ("blue", 3)]


def test_a_sorted_registry_lists_and_reports_its_names_sorted():
    registry = Registry("colour", {"red": 1, "blue": 3}, sort=True)
    assert registry.names() == ["blue", "red"] == list(registry)
    with pytest.raises(ValueError, match="known: blue, red$"):
        registry.get("pink")


def test_an_unknown_name_is_a_value_error_and_a_key_error_listing_the_known_names(colours):
    with pytest.raises(UnknownNameError) as info:
        colours.get("pink")
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    assert str(info.value) == "unknown colour 'pink'; known: red, green, blue"
    with pytest.raises(KeyError, match="unknown colour"):
        colours["pink"]
    with pytest.raises(UnknownNameError, match="unknown colour"):
        colours.get(["unhashable"])


def test_the_hint_ends_the_unknown_name_message():
    registry = Registry("task", {"a": 1}, hint=" (or module:function)")
    with pytest.raises(ValueError, match=r"^unknown task 'b'; known: a \(or module:function\)$"):
        registry.get("b")
    assert str(registry.unknown("c")) == "unknown task 'c'; known: a (or module:function)"


def test_registering_a_taken_name_needs_replace(colours):
    with pytest.raises(ValueError, match="colour 'red' is already registered; pass replace=True"):
        colours.register("red", 9)
    assert colours["red"] == 1
    assert colours.register("red", 9, replace=True) == 9
    assert colours["red"] == 9 and colours.names() == ["red", "green", "blue"]
    assert colours.register("pink", 4) == 4 and colours.names()[-1] == "pink"


def test_the_first_entries_are_registered_so_a_repeated_name_is_an_error():
    with pytest.raises(ValueError, match="'red' is already registered"):
        Registry("colour", [("red", 1), ("red", 2)])


def test_unregister_removes_a_name_and_returns_its_value(colours):
    assert colours.unregister("green") == 2
    assert "green" not in colours and colours.names() == ["red", "blue"]
    with pytest.raises(UnknownNameError, match="unknown colour 'green'"):
        colours.unregister("green")


# --------------------------------------------------------------------------
# The registries of spaces, searchers, tasks and the zoo.


def test_the_four_registries_keep_their_messages():
    with pytest.raises(ValueError, match="^unknown space 'x'; known: nos, terms, autolr$"):
        spaces.get("x")
    with pytest.raises(ValueError, match="^unknown searcher 'x'; known: ga, particle_ga, "):
        searchers.get("x", space=None)
    with pytest.raises(ValueError, match=r"^unknown task 'x'; known: .*\(or module:function"):
        tasks.get("x")
    with pytest.raises(KeyError, match="unknown zoo optimizer 'x'; known: sgd, momentum"):
        zoo.get("x")


def test_searchers_table_is_a_mapping_of_classes():
    assert "ga" in searchers.SEARCHERS and "cma_es" not in searchers.SEARCHERS
    assert searchers.SEARCHERS["ga"] is searchers.GeneticAlgorithm
    assert list(searchers.SEARCHERS) == searchers.names()


def test_offline_tasks_are_the_built_in_tasks_that_need_no_download():
    assert set(tasks.OFFLINE_TASKS).isdisjoint(tasks.TFDS_TASKS)
    assert sorted([*tasks.OFFLINE_TASKS, *tasks.TFDS_TASKS]) == tasks.names()
    assert tasks.OFFLINE_TASKS[:2] == ("digits_mlp", "digits_cnn")
