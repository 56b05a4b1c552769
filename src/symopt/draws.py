"""Random draws of the noise operands and the dropout operators.

A draw is a hash of (seed words, step, element), where the element counts
through the flattened parameter tree: a leaf's draws start at its
``offset``, the sizes of the leaves before it. So the draws need no key
splitting, and one function gives the same numbers to ``to_optax`` (leaf by
leaf), to the population engine (all weights of all runs in one fused draw)
and to exported modules (which embed this module's source). The hash is
Wellons' lowbias32, a few integer multiply-xorshift rounds an element, which
fuses into the step's kernels where ``jax.random``'s threefry would not.
"""

from __future__ import annotations

from typing import Any

import jax

Array = Any

STEP_MIX = 0x9E3779B9
"""The golden-ratio constant: decorrelates the steps' streams."""


def mix32(xp, x: Array) -> Array:
    """lowbias32: a well-mixing bijection of 32-bit integers."""
    x = x ^ (x >> 16)
    x = x * xp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * xp.uint32(0x846CA68B)
    return x ^ (x >> 16)


UNIFORM_LANE, NOISE_LANE = 0, 1
"""The streams' lanes: the dropout uniforms' and the noise's."""


def step_stream(xp, seed_words: Array, step: Array) -> Array:
    """The uint32 word ([1]) that one step's draws of ``seed_words`` hash with."""
    # One-element arrays, not scalars: NumPy wraps uint32 arrays silently.
    seed_words = xp.asarray(seed_words).astype(xp.uint32).reshape(2)
    step = xp.asarray(step).astype(xp.uint32).reshape(1)
    return mix32(xp, seed_words[:1] ^ mix32(xp, seed_words[1:] + step * xp.uint32(STEP_MIX)))


def element_units(xp, element: Array, stream: Array, lane: int, dtype) -> Array:
    """Uniform [0, 1) numbers, 24 random bits each, of the uint32 ``element``
    indices in ``stream`` (:func:`step_stream`) and ``lane``.

    A function of its element alone, so a kernel that steps a block of the
    weights draws that block's numbers itself."""
    bits = mix32(xp, (element * xp.uint32(3) + xp.uint32(lane)) ^ stream) >> 8
    dtype = xp.dtype(dtype).type
    return bits.astype(xp.int32).astype(dtype) * dtype(2.0**-24)  # 24 bits: exact in int32


def normal_units(xp, u: Array, dtype) -> Array:
    """Standard-normal numbers from :func:`element_units`' ``u``: the inverse
    CDF, ``sqrt(2) erfinv(2u - 1)``, at the centre of ``u``'s 2**24 cells, so
    exactly symmetric and never +-1: one hash and one erfinv an element,
    where Box-Muller needs two hashes, a log, a square root and a cosine."""
    centred = 2.0 * u - (1.0 - 2.0**-24)  # (2k + 1) 2**-24 - 1: exact in float32
    return xp.asarray(2.0**0.5 * jax.lax.erf_inv(centred), dtype)


def unit_draws(xp, seed_words: Array, step: Array, offset: int, shape, lane: int, dtype) -> Array:
    """Uniform [0, 1) numbers of elements ``offset, offset + 1, ...`` at one
    step, from stream ``lane``, with 24 random bits each."""
    size = 1
    for n in shape:
        size *= int(n)
    element = xp.arange(size, dtype=xp.uint32) + xp.uint32(offset)
    units = element_units(xp, element, step_stream(xp, seed_words, step), lane, dtype)
    return units.reshape(shape)


def uniform_draws(xp, seed_words: Array, step: Array, offset: int, shape,
                  dtype="float32") -> Array:
    """[0, 1) uniforms of the dropout operators for the elements from ``offset``
    of the flattened parameters, at ``step``."""
    return unit_draws(xp, seed_words, step, offset, shape, UNIFORM_LANE, dtype)


def noise_draws(xp, seed_words: Array, step: Array, offset: int, shape,
                dtype="float32") -> Array:
    """Standard-normal noise for the elements from ``offset``, at ``step``
    (:func:`normal_units` of one uniform an element)."""
    u = unit_draws(xp, seed_words, step, offset, shape, NOISE_LANE, dtype)
    return normal_units(xp, u, dtype)


def seed_words(seed: int) -> jax.Array:
    """The two uint32 words the draws of ``seed`` are hashed from."""
    return jax.random.key_data(jax.random.key(seed))
