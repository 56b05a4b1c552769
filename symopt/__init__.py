"""symopt: evolutionary search over symbolic optimizers, exported to optax.

The public surface, re-exported here one name at a time::

    g = symopt.zoo.adam()                       # a Graph
    tx = symopt.to_optax(g, learning_rate=1e-3, total_steps=1000)
    symopt.save(g, "adam.json"); g = symopt.load("adam.json")
    symopt.to_latex(g); symopt.check(g).ok; symopt.fingerprint(g)
"""

from symopt import ops, zoo
from symopt.compile import SymoptState, scale_by_graph, to_optax
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

__version__ = "0.1.0"

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
    "to_dict",
    "to_latex",
    "to_optax",
    "to_sympy",
    "to_text",
    "validate",
    "zoo",
]
