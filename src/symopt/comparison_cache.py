"""Test-task comparisons measured once and reused by later searches of one protocol.

Every search's test tasks train the winner next to the same comparisons (tuned
Adam, AdamW, Lion, Muon, ...), at the same budgets, seeds and learning-rate
multipliers. A benchmark that runs five search seeds of one config would train
the comparisons five times over and get the same figures: they do not depend
on the search. :class:`ComparisonCache` keeps each comparison's
:class:`symopt.heldout.Result` on each test task as one JSON file in a
directory (``test.comparison_cache``; ``benchmark_search.py`` points every
seed at ``<workdir>/comparisons``), and :func:`symopt.heldout.evaluate_all`
trains only what is not there.

A result is reused only under the exact conditions it was measured in. Its
key is a digest of the comparison's name, the task's name and settings (the
config's test budget, batch size and ``tasks.options`` for it), the
multipliers, the training strategy and the source of the installed
``symopt`` package as the process imported it: a change to any file of the
package (a task, a comparison, the trainer) starts a new cache for the
searches started after it. A task given as
``module:function`` is the user's code, outside that digest, so it is never
cached. Files are written whole (a temporary file, then a rename), so a run
killed mid-write leaves no partial entry; an entry that cannot be read is
measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from symopt import heldout

_PACKAGE = pathlib.Path(__file__).resolve().parent


def package_digest(package: pathlib.Path) -> str:
    """A digest of the paths and contents of every Python file under ``package``."""
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


_AT_IMPORT = package_digest(_PACKAGE)


def source_digest() -> str:
    """A digest of every Python file of the installed ``symopt`` package, as
    they were when this process imported the search (this module is imported
    with :mod:`symopt.run`): a file edited while a search runs does not change
    the code that search runs, so it does not change the key its comparisons
    are stored under either."""
    return _AT_IMPORT


class ComparisonCache:
    """Comparison results by task and comparison, under one directory.

    Args:
      directory: where the entries live (created on the first write).
      task_settings: per test task name, what besides the code decides its
        figures (JSON-serialisable): budget, batch size, options.
      multipliers: the learning-rate multipliers tuned over.
      strategy: the population strategy (``evaluation.strategy``).
    """

    def __init__(self, directory: str | os.PathLike[str], *,
                 task_settings: Mapping[str, Any], multipliers: Sequence[float],
                 strategy: str) -> None:
        self.directory = pathlib.Path(directory)
        self._context = {"tasks": dict(task_settings),
                         "multipliers": [float(m) for m in multipliers],
                         "strategy": strategy, "source": source_digest()}

    def cacheable(self, task: str) -> bool:
        """Whether ``task``'s results may be kept: a registered task, not user code."""
        return ":" not in task and task in self._context["tasks"]

    def _path(self, task: str, comparison: str) -> pathlib.Path:
        material = json.dumps({"task": task, "settings": self._context["tasks"][task],
                               "comparison": comparison,
                               **{k: v for k, v in self._context.items() if k != "tasks"}},
                              sort_keys=True, default=repr)
        digest = hashlib.sha256(material.encode()).hexdigest()[:24]
        return self.directory / f"{task}.{comparison}.{digest}.json"

    def get(self, task: str, comparison: str) -> heldout.Result | None:
        """The stored result of ``comparison`` on ``task``, or None."""
        if not self.cacheable(task):
            return None
        path = self._path(task, comparison)
        try:
            return heldout.Result.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError):  # unreadable: measure it again
            return None

    def put(self, result: heldout.Result) -> None:
        """Keeps ``result`` (a comparison's, on a cacheable task)."""
        if not self.cacheable(result.task):
            return
        path = self._path(result.task, result.optimizer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result.to_dict()))
        os.replace(tmp, path)
