"""Which strategy steps the runs: ``"auto"`` resolved for the backend.

On CPU the loop strategy's real branches are cheapest. On GPU and TPU a loop
whose trip count differs per run waits on the host at every iteration, so
``"auto"`` picks :data:`ACCELERATOR_STRATEGY` there instead.
"""

from __future__ import annotations

import jax

from symopt.population import fused
from symopt.program import STRATEGIES

ACCELERATOR_STRATEGY = "vmap"
"""What ``"auto"`` picks on GPU and TPU: ``"vmap"``, because the fused
kernel is tested only in Pallas's interpret mode and lowered for Triton and
Mosaic, and its speed on a device is not yet known (docs/benchmarks.md,
"fused strategy"). ``evaluation.strategy=fused`` selects the kernel, falling
back to ``"vmap"`` where it does not compile."""


def default_strategy() -> str:
    """``"loop"`` on CPU; on an accelerator :data:`ACCELERATOR_STRATEGY`, or
    ``"vmap"`` where the fused kernel has no native backend."""
    backend = jax.default_backend()
    if backend == "cpu":
        return "loop"
    if ACCELERATOR_STRATEGY == "fused" and backend not in fused.NATIVE:
        return "vmap"
    return ACCELERATOR_STRATEGY


def resolve_strategy(strategy: str) -> str:
    """``"loop"``, ``"vmap"`` or ``"fused"``: ``strategy``, with ``"auto"``
    resolved for the default backend. Raises ValueError for an unknown one."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return default_strategy() if strategy == "auto" else strategy
