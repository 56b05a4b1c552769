"""symopt: evolutionary search over symbolic optimizers, exported to optax.

The public surface, re-exported here one name at a time::

    g = symopt.zoo.adam()                       # a Graph
    tx = symopt.to_optax(g, learning_rate=1e-3, total_steps=1000)
    symopt.save(g, "adam.json"); g = symopt.load("adam.json")
    symopt.to_latex(g); symopt.check(g).ok; symopt.fingerprint(g)
    result = symopt.search("experiments/digits.py", "runs/digits")  # a whole search
"""

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, imported on first use (:func:`__getattr__`)
    from symopt import ops, zoo
    from symopt.graph import (
        Expr,
        Graph,
        GraphError,
        Hyperparams,
        Node,
        Schedule,
        TrainingLengthWarning,
        canonical,
        from_dict,
        from_json,
        load,
        save,
        to_dict,
        validate,
    )
    from symopt.integrity import CheckReport, check, fingerprint
    from symopt.symbolic import to_latex, to_sympy, to_text
    from symopt.transform import SymoptState, scale_by_graph, to_optax

_LAZY = {
    **dict.fromkeys(("Expr", "Graph", "GraphError", "Hyperparams", "Node", "Schedule",
                     "TrainingLengthWarning", "canonical", "from_dict", "from_json", "load",
                     "save", "to_dict", "validate"), "symopt.graph"),
    **dict.fromkeys(("CheckReport", "check", "fingerprint"), "symopt.integrity"),
    **dict.fromkeys(("to_latex", "to_sympy", "to_text"), "symopt.symbolic"),
    **dict.fromkeys(("SymoptState", "scale_by_graph", "to_optax"), "symopt.transform"),
}
"""Each public name and the module that defines it. Importing ``symopt``
imports none of them (nor JAX): ``python -m symopt.main`` handles Ctrl-C
before anything heavy is loaded, and a name is imported on first use."""
_SUBMODULES = ("ops", "zoo")


def __getattr__(name: str) -> Any:
    """Imports a public name on first use (PEP 562) and keeps it."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"symopt.{name}")
    else:
        raise AttributeError(f"module 'symopt' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"


def search(config: Any, workdir: str | os.PathLike[str], *, log: Any = print) -> Any:
    """Runs a search, or resumes the one in ``workdir``: what
    ``python -m symopt.main --config=... --workdir=...`` does, from Python.

    Args:
      config: an ``ml_collections.ConfigDict`` (``symopt.config.default_config()``
        and changes), or the path of a config file defining ``get_config()``.
      workdir: where the archive, ``best.json`` and ``summary.md`` go.
      log: called with each progress line (``print`` by default).

    Returns:
      A :class:`symopt.run.RunResult`: the winner's record and graph, the
      candidates by status, and the time taken.

    Raises:
      symopt.config.ConfigError: a bad config (one line).
    """
    from symopt import config as config_lib  # noqa: PLC0415 (JAX and the tasks load on use)
    from symopt import run  # noqa: PLC0415

    if isinstance(config, (str, os.PathLike)):
        config = config_lib.from_file(config)
    return run.run(config, workdir, log=log)


__all__ = [
    "Expr",
    "Graph",
    "GraphError",
    "Hyperparams",
    "Node",
    "Schedule",
    "SymoptState",
    "TrainingLengthWarning",
    "CheckReport",
    "canonical",
    "check",
    "fingerprint",
    "from_dict",
    "from_json",
    "load",
    "ops",
    "save",
    "scale_by_graph",
    "search",
    "to_dict",
    "to_latex",
    "to_optax",
    "to_sympy",
    "to_text",
    "validate",
    "zoo",
]
