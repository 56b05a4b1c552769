"""The population engine: one optax transformation that steps many graphs at once.

The public surface, re-exported here one name at a time::

    tx = symopt.population.optimizer(program, shape, total_steps,
                                     runs_per_candidate=2, strategy="auto")
    state = tx.init(params)                        # params: pytrees of [R, ...]
    updates, state = tx.update(grads, state, params)

:func:`optimizer` turns P graphs encoded as arrays (:mod:`symopt.program`)
into one optax transformation over a *batch of runs* (pytrees with a leading
axis R; run ``r`` uses candidate ``r // runs_per_candidate``). A new
generation is new data for the same compiled step, never a new compile. Its
updates are those of :func:`symopt.to_optax` of each graph
(``tests/test_population.py``) because it reads the same definitions: the
operators and operands (:mod:`symopt.ops`), the parts of the step every
graph shares (:mod:`symopt.step`), the schedules and decays, tabulated per
step (:mod:`symopt.tables`), and the random draws (:mod:`symopt.draws`).

Only a graph's direction differs from run to run, so only it is computed per
run: the run's step picks its operands and operators with ``lax.switch`` and
reads them from a small table of its operand slots, constants, recurrent
states and nodes (:mod:`~symopt.population.table`). Clipping, the moment
EMAs, bias correction, momentum and the update are computed over all runs at
once, in a few wide passes (:mod:`~symopt.population.optimizer`). The runs
are stepped in one of three ways (``strategy``), because the cheapest way to
branch differs by backend:

* ``"loop"`` (:mod:`~symopt.population.loop`; auto's choice on CPU): a
  ``fori_loop`` over candidates, then over the operand slots and active
  nodes of the candidate's graph. Each switch is a real branch, so a run
  pays only for the operators its graph uses.
* ``"vmap"`` (:mod:`~symopt.population.vmap`; auto's choice on GPU and TPU,
  :data:`ACCELERATOR_STRATEGY`): ``jax.vmap`` over runs, where a switch
  computes all its branches and selects: more flops, in a few wide kernels,
  and no ``lax.cond`` and no loop whose trip count differs per run, which
  on an accelerator waits on the host at every iteration.
* ``"fused"`` (:mod:`~symopt.population.fused`; chosen with
  ``strategy="fused"``: auto keeps vmap until the kernel's speed on a device
  is known): one Pallas kernel over (run, parameter block). A block belongs to
  one run, so its switches are real branches on that run's scalars, and it
  reads the run's arrays once and writes its update, moments, trace and
  states once, in place (on GPU only those its graph uses), where vmap makes
  a pass per operation. Noise and dropout draws are hashed inside the
  kernel, where a block reads them. Where the kernel does not compile for a
  backend and program shape, the step falls back to ``"vmap"`` with a
  warning. On CPU it runs in Pallas's interpret mode, for the tests.

The per-leaf operators (:data:`symopt.ops.LEAF_OPERATORS`: ``orth``, the
RMS of a leaf, its rows and columns, ...) read a whole parameter tensor, while
the engine holds each run's weights flattened: where the program shape has
``leaf_ops``, a node's per-leaf branch cuts the run's row into its leaves
(their shapes are static, so this is one compile), applies the operator to
each and joins them again (:func:`~symopt.population.packing.leaf_applier`).
Where ``leaf_ops`` is False their branches are placeholders no program picks,
so a population that cannot use them compiles and runs as before. The fused
kernel sees blocks of weights, not leaves: a shape with ``leaf_ops`` steps with
``"vmap"`` instead.

The records every strategy reads are in :mod:`~symopt.population.state`,
how they are packed and the weights flattened in
:mod:`~symopt.population.packing`, and how ``"auto"`` is resolved in
:mod:`~symopt.population.strategy`.

A training loop may keep the weights flat from its first step to its last
(``layout=weight_layout(one_run_params, strategy)``; :mod:`symopt.evaluate`
does): its params, gradients and updates are then [R, L] arrays, the model
reads its tree as a view of them, and no step flattens the weights or
unflattens the update.
"""

from symopt.population.optimizer import optimizer, padded_length, weight_layout
from symopt.population.packing import WeightLayout
from symopt.population.state import (
    Moments,
    PopulationState,
    RunArrays,
    RunFloats,
    RunInts,
    RunScalars,
)
from symopt.population.strategy import ACCELERATOR_STRATEGY, default_strategy, resolve_strategy
from symopt.population.table import uses_moments
from symopt.program import STRATEGIES

__all__ = [
    "ACCELERATOR_STRATEGY",
    "STRATEGIES",
    "Moments",
    "PopulationState",
    "RunArrays",
    "RunFloats",
    "RunInts",
    "RunScalars",
    "WeightLayout",
    "default_strategy",
    "optimizer",
    "padded_length",
    "resolve_strategy",
    "uses_moments",
    "weight_layout",
]
