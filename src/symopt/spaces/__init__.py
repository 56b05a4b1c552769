"""Search spaces: each produces symopt Graphs, by name.

    space = symopt.spaces.get("nos", max_nodes=6)
    genome = space.sample(np.random.default_rng(0)); graph = space.to_graph(genome)

``nos``: dual-joint graphs (Morgan & Hougen 2024); ``terms``: the genome of
primitive update terms (Marfinetz 2025); ``autolr``: AutoLR's dynamic
schedules and adaptive per-weight rules (Carvalho et al. 2022). Each
implements :class:`symopt.spaces.base.Space`.
"""

from __future__ import annotations

import importlib
from typing import Any

from symopt.registry import Registry
from symopt.spaces.base import Genome, Space

SPACES: Registry[tuple[str, str]] = Registry("space", {
    "nos": ("symopt.spaces.nos", "NosSpace"),
    "terms": ("symopt.spaces.terms", "TermsSpace"),
    "autolr": ("symopt.spaces.autolr", "AutoLRSpace"),
})
"""Space classes by the name a config uses: (module, class), imported on use."""


def names() -> list[str]:
    """The registered space names."""
    return SPACES.names()


def space_class(name: str) -> type:
    """The class of space ``name``; ValueError listing the known names."""
    module, cls = SPACES.get(name)
    return getattr(importlib.import_module(module), cls)


def get(name: str, **options: Any) -> Space:
    """Space ``name`` configured by keyword; unknown options raise ValueError."""
    cls = space_class(name)
    try:
        return cls(**options)
    except TypeError as e:  # an unknown field
        raise ValueError(f"space {name!r}: {e}") from None


__all__ = ["Genome", "SPACES", "Space", "get", "names", "space_class"]
