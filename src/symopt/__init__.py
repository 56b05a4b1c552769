"""symopt: evolutionary search over symbolic optimizers, exported to optax.

The public surface, re-exported here one name at a time::

    g = symopt.zoo.adam()                       # a Graph
    tx = symopt.to_optax(g, learning_rate=1e-3, total_steps=1000)
    symopt.save(g, "adam.json"); g = symopt.load("adam.json")
    symopt.to_latex(g); symopt.check(g).ok; symopt.fingerprint(g)
    result = symopt.search("experiments/digits.py", "runs/digits")  # a whole search
"""

import os
from typing import Any

from symopt import ops, zoo
from symopt.graph import (
    Expr,
    Graph,
    GraphError,
    Hyperparams,
    Node,
    Schedule,
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
