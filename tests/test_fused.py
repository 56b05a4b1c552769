"""The fused strategy: one Pallas kernel over (run, parameter block).

On CPU the kernel runs in Pallas's interpret mode (on a GPU or TPU, the
kernel itself). It is checked against ``to_optax`` graph by graph as the
other strategies are (``tests/helpers.py``, whose helpers this
reuses: float64, 20 steps, rtol 1e-5), against the loop strategy over
several blocks and runs per candidate, and in both of its ways with outputs
(lazy, as on GPU, and writing every block, as on TPU). It is lowered for GPU
through Triton and for TPU through Mosaic, without either device. Each fused
population compiles one kernel (a few seconds on 2 cores): the default run
checks its updates on a small shape and lowers it for a GPU; ``pytest -m slow``
checks it against the loop strategy and against ``to_optax`` on a handful of
graphs, the zoo and 50 random checked graphs.
"""

import contextlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AbstractDevice, AbstractMesh, AxisType, use_abstract_mesh

from symopt import population, zoo
from symopt.graph import Graph, nodes
from symopt.population import fused
from symopt.program import ProgramShape, encode
from symopt.spaces import nos

import helpers as reference

FEATURES = {
    "clip_norm": lambda g: g.hparams.clip_norm > 0,
    "clip_value": lambda g: g.hparams.clip_value > 0,
    "noise": lambda g: any("noise" in n.a + n.b for n in g.update.nodes),
    "dropout": lambda g: any(op.startswith("drop") for n in g.update.nodes
                             for op in (n.left, n.right)),
    "states": lambda g: bool(g.states),
    "decays": lambda g: bool(g.decays),
    "weight_decay": lambda g: g.hparams.weight_decay > 0,
}


def _covering(graphs: list[Graph]) -> list[Graph]:
    """The first graphs that between them have every one of FEATURES."""
    chosen, missing = [], set(FEATURES)
    for graph in graphs:
        has = {name for name in missing if FEATURES[name](graph)}
        if has:
            chosen.append(graph)
            missing -= has
    assert not missing, missing
    return chosen


def _checked(count: int) -> list[Graph]:
    return nos.sample_checked(np.random.default_rng(0), count)


# slow: by default the fused kernel's updates are checked on a small shape
# (test_a_shape_without_states_or_constants_steps_writing_every_block) and the loop
# strategy steps as to_optax does (tests/test_population.py).
@pytest.mark.slow
def test_fused_agrees_with_to_optax_before_and_past_total_steps():
    """A handful of graphs (the zoo's stateful and momentum ones, schedules,
    decays and random checked graphs that clip, draw noise and dropout and
    keep states) over 20 steps of T = 8."""
    graphs = [zoo.lion(), zoo.ades(), zoo.nesterov(), *reference.step_dependent_graphs()[:3],
              reference.PIECEWISE[1], *_covering(_checked(50))]
    reference.check_agreement(graphs, "fused", total_steps=8)


@pytest.mark.slow
def test_fused_agrees_with_to_optax_on_the_zoo_and_50_random_checked_graphs():
    reference.check_agreement([zoo.get(n) for n in zoo.names()] + _checked(50), "fused")


@pytest.mark.slow
def test_fused_agrees_with_to_optax_past_total_steps():
    reference.check_agreement(reference.step_dependent_graphs(), "fused", total_steps=6)


def _updates(graphs, strategy, runs_per_candidate=2, steps=4):
    """float32 updates of ``steps`` steps of every run: 300 weights (several
    blocks), each run with its own gradients and noise seed."""
    program = encode(graphs, reference.SHAPE)
    runs = len(graphs) * runs_per_candidate
    params = {"a": jnp.linspace(-1.0, 1.0, 200).reshape(20, 10), "b": jnp.zeros(100)}
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (runs, *x.shape)), params)
    scale = jnp.arange(1, runs + 1, dtype=jnp.float32)

    def run(program):  # the optimizer made under jit: its step tables in the program
        tx = population.optimizer(program, reference.SHAPE, 3,
                                  runs_per_candidate=runs_per_candidate,
                                  seeds=jnp.arange(runs) % 3, strategy=strategy)

        def body(state, k):
            g = jax.tree.map(
                lambda x: jnp.sin(3.0 * x + k) * scale.reshape(-1, *[1] * (x.ndim - 1)), batched)
            return tx.update(g, state, batched)[::-1]

        return jax.lax.scan(body, tx.init(batched), jnp.arange(steps))[1]

    return jax.jit(run)(program)


def _blocks_graphs() -> list[Graph]:
    return [zoo.lion(), zoo.ades(), zoo.nesterov(),
            zoo.adam().with_hparams(clip_norm=0.5, clip_value=0.01),
            Graph(update=nodes(("add", "identity", "g", "drop_0.3", "noise"))),
            Graph(update=nodes(("mul", "identity", "noise_annealed", "sign", "m")))]


# Both under `pytest -m slow` (a fused and a loop population of 300 weights each): by
# default the fused kernel's updates are checked on a small shape, below.
@pytest.mark.slow
@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "writes_every_block"])
def test_fused_steps_several_blocks_and_seeds_as_the_loop_does(monkeypatch, lazy):
    """128-element blocks (3 a run, the last one padded), 2 runs a candidate
    with their own seeds, past T; lazy as on GPU, or writing every output
    block as on TPU (by default only on a small shape, below)."""
    monkeypatch.setitem(fused.BLOCK_ROWS, fused.platform(), 1)
    monkeypatch.setitem(fused.LAZY, fused.platform(), lazy)
    graphs = _blocks_graphs()
    ours, loop = _updates(graphs, "fused"), _updates(graphs, "loop")
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(loop), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_shape_without_states_or_constants_steps_writing_every_block(monkeypatch):
    """The TPU way (every output block written) on a small shape; a new
    generation reuses the compiled step."""
    monkeypatch.setitem(fused.LAZY, fused.platform(), False)
    shape = ProgramShape(max_nodes=2, max_operands=2, max_constants=0, max_states=0,
                         max_decay_nodes=1, max_schedule_nodes=1)
    params = {"w": jnp.zeros((4, 3))}

    @jax.jit
    def two_steps(program):
        tx = population.optimizer(program, shape, 10, runs_per_candidate=2, strategy="fused")
        state = tx.init(params)
        for _ in range(2):
            updates, state = tx.update({"w": jnp.ones((4, 3))}, state, params)
        return updates["w"], state

    adam, momentum = zoo.adam(), zoo.momentum()
    updates, state = two_steps(encode([adam, momentum], shape))
    lr = momentum.hparams.learning_rate
    np.testing.assert_allclose(updates[2:], -lr * (1 + momentum.hparams.momentum))
    np.testing.assert_allclose(updates[:2], -adam.hparams.learning_rate, rtol=1e-5)
    assert state.m.shape == (4, fused.padded_length(3, fused.platform()))
    compiled = two_steps._cache_size()
    swapped, _ = two_steps(encode([momentum, adam], shape))
    assert two_steps._cache_size() == compiled
    np.testing.assert_array_equal(swapped[:2], updates[2:])


def _tpu_v5e() -> contextlib.AbstractContextManager:
    """Traces and lowers as for one TPU v5e chip (JAX's abstract mesh: no TPU needed)."""
    device = AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu")
    return use_abstract_mesh(AbstractMesh((1,), ("x",), (AxisType.Explicit,),
                                          abstract_device=device))


def _lowered_step(graphs: list[Graph], strategy: str, lowering: str,
                  target=contextlib.nullcontext) -> str:
    """The text of one population step of ``graphs`` (over [2, 300] weights),
    lowered for the ``lowering`` platform without its device, inside
    ``target()`` (and with warnings as errors: no fallback)."""
    program = encode(graphs, reference.SHAPE)
    params = {"w": jnp.zeros((2, 300))}

    def step(program, params):
        tx = population.optimizer(program, reference.SHAPE, 10, strategy=strategy)
        return tx.update(params, tx.init(params), params)

    with warnings.catch_warnings(), target():
        warnings.simplefilter("error")
        return jax.jit(step).trace(program, params).lower(
            lowering_platforms=(lowering,)).as_text()


# TPU under `pytest -m slow`: each case traces and lowers the whole step.
@pytest.mark.parametrize("platform, lowering, kernel, target", [
    ("gpu", "cuda", "__gpu$xla.gpu.triton", contextlib.nullcontext),
    pytest.param("tpu", "tpu", "tpu_custom_call", _tpu_v5e, marks=pytest.mark.slow),
], ids=["gpu_triton", "tpu_mosaic"])
def test_the_fused_kernel_lowers_for_accelerators(monkeypatch, platform, lowering, kernel,
                                                  target):
    """The whole step, as a GPU (Triton) or TPU (Mosaic) would compile it:
    Pallas's lowerings run without the device. One kernel, and no fallback."""
    monkeypatch.setattr(fused, "platform", lambda: platform)
    assert _lowered_step([zoo.lion(), zoo.adam()], "fused", lowering, target).count(kernel) == 1


# slow: it lowers two steps for a GPU; by default the fused step is lowered for a GPU
# once (test_the_fused_kernel_lowers_for_accelerators).
@pytest.mark.slow
def test_the_fused_step_stores_no_draws_its_kernel_hashes_them(monkeypatch):
    """Noise and dropout draws are made inside the kernel, where a block that
    reads them hashes its own elements: the step's program outside the
    kernel computes none (the vmap strategy's, lowered alike, does)."""
    monkeypatch.setattr(fused, "platform", lambda: "gpu")
    noisy = [g for g in _checked(50) if FEATURES["noise"](g) and FEATURES["dropout"](g)][:1]
    assert noisy and "erf_inv" in _lowered_step([*noisy, zoo.adam()], "vmap", "cuda")
    assert "erf_inv" not in _lowered_step([*noisy, zoo.adam()], "fused", "cuda")


def test_where_the_kernel_does_not_compile_the_step_falls_back_to_vmap_once(monkeypatch):
    monkeypatch.setattr(fused, "platform", lambda: "gpu")
    monkeypatch.setattr(fused, "compiles", lambda *args: "NotImplementedError: no such op")
    shape = ProgramShape(max_nodes=3, max_operands=3, max_constants=1, max_states=1,
                         max_decay_nodes=1, max_schedule_nodes=1)
    program = encode([zoo.adam(), zoo.signum()], shape)
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}

    def step(strategy):
        tx = population.optimizer(program, shape, 10, strategy=strategy)
        return tx.update(params, tx.init(params), params)[0]

    with pytest.warns(RuntimeWarning, match="no such op.*vmap") as caught:
        ours = jax.jit(step, static_argnums=0)("fused")
        jax.jit(step, static_argnums=0).trace("fused")  # a second trace: no second warning
    assert len(caught) == 1
    np.testing.assert_array_equal(ours["w"], jax.jit(step, static_argnums=0)("vmap")["w"])


def test_auto_is_loop_on_cpu_and_the_accelerator_strategy_on_gpu(monkeypatch):
    assert "fused" in population.STRATEGIES
    assert population.resolve_strategy("fused") == "fused"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert population.resolve_strategy("auto") == "loop"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert population.resolve_strategy("auto") == "vmap"  # until measured on a GPU
    monkeypatch.setattr("symopt.population.strategy.ACCELERATOR_STRATEGY", "fused")
    assert population.resolve_strategy("auto") == "fused"
