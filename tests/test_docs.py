"""The README's config table says what ``default_config()`` holds: every key, its
default, and the meaning :data:`symopt.config.MEANINGS` defines (``--help`` prints it)."""

from __future__ import annotations

import ast
import os
import re

import pytest

from symopt import config as config_lib

from helpers import ROOT

ROW = re.compile(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \| ([^|]*) \|(?: (.*) \|)?")


def _readme_table() -> list[tuple[tuple[str, ...], str, str]]:
    """The README config table's rows: (keys, default cell, meaning cell); a row
    may name several keys, with one default each or one for all."""
    rows = []
    with open(os.path.join(ROOT, "README.md")) as f:
        for line in f:
            match = ROW.match(line)
            if not match:
                continue
            keys = tuple(k.strip("` ") for k in match.group(1).split(","))
            if keys[0].split(".")[0] not in config_lib.SECTIONS:
                continue  # another table's row
            rows.append((keys, match.group(2).strip(), (match.group(3) or "").strip()))
    return rows


def _readme_rows() -> dict[str, str]:
    """Config key -> its default cell, from the README's table."""
    rows = {}
    for keys, defaults, _ in _readme_table():
        rows.update(zip(keys, _split_defaults(defaults, len(keys)), strict=True))
    return rows


def _split_defaults(cell: str, count: int) -> list[str]:
    if count == 1:
        return [cell]
    parts, depth, current = [], 0, ""
    for char in cell:  # commas inside (...) belong to a tuple
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts if len(parts) == count else [cell] * count


def _parse(cell: str):
    cell = cell.strip("`")
    if cell in ("{}", '""'):
        return {} if cell == "{}" else ""
    try:
        return ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return cell


DEFAULTS = config_lib.flatten(config_lib.default_config())


def test_the_readme_table_names_every_config_key_and_no_other():
    rows = _readme_rows()
    assert sorted(set(DEFAULTS) - set(rows)) == [], "keys missing from the README's table"
    assert sorted(set(rows) - set(DEFAULTS)) == [], "README keys that default_config lacks"


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_the_readme_table_gives_each_keys_default(key):
    cell = _readme_rows()[key]
    default = DEFAULTS[key]
    shown = _parse(cell)
    if isinstance(default, tuple):
        assert tuple(float(x) for x in shown) == pytest.approx(default), cell
    elif isinstance(default, float):
        assert float(shown) == pytest.approx(default), cell
    else:
        assert shown == default, cell


def test_every_config_key_has_a_meaning():
    assert sorted(set(DEFAULTS) - set(config_lib.DESCRIPTIONS)) == []
    assert sorted(set(config_lib.DESCRIPTIONS) - set(DEFAULTS)) == []


def test_the_readme_table_gives_the_meanings_the_config_schema_defines():
    readme = [(keys, meaning) for keys, _, meaning in _readme_table()]
    assert readme == list(config_lib.MEANINGS)


def test_help_text_lists_every_config_key_with_its_default_and_meaning():
    text = config_lib.help_text()
    for keys, meaning in config_lib.MEANINGS:
        assert f"  {', '.join(keys)} = " in text
        assert meaning.replace("`", "").replace("*", "") in text
    assert "  search.generations = 10\n" in text
