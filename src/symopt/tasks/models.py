"""Flax linen models for the tasks: MLPs and small ConvNets.

Every model is called as ``model(x, train=...)`` and returns logits, so that
:func:`symopt.tasks.base.classification_task` can treat them alike; only
:class:`BatchNormCNN` keeps state (the ``batch_stats`` collection).

The image models follow the tasks of Marfinetz, "Evolving Deep Learning
Optimizers" (arXiv 2512.11853): a small CNN (conv 32,
conv 64, FC 256) for MNIST and Fashion-MNIST, and a 2-block BatchNorm CNN
(FC 512) for CIFAR-10.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn


class PatchConv(nn.Module):
    """A convolution with "SAME" padding computed as ``patches @ kernel`` (im2col).

    Same parameters (``kernel`` of shape ``(*kernel_size, in, features)``,
    ``bias``) and outputs as ``nn.Conv``. The patches are shifted, strided
    slices of the padded input, so under ``jax.vmap`` over parameters (a
    population of candidates) the layer becomes a batched matrix product
    rather than the grouped convolution that vmapping ``lax.conv`` gives,
    which XLA runs faster on CPU. The patches take ``prod(kernel_size)``
    times the input's memory: meant for the small offline models, not for
    32x32 images on an accelerator.
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] | None = None
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_size = tuple(self.kernel_size)
        strides = tuple(self.strides) if self.strides else (1,) * len(kernel_size)
        patches = _same_patches(x, kernel_size, strides)
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (*kernel_size, x.shape[-1], self.features)
        )
        y = patches @ kernel.reshape(-1, self.features)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _same_patches(x: jax.Array, kernel_size: tuple[int, ...], strides: tuple[int, ...]):
    """The "SAME"-padded patches of ``x`` (``[batch, *spatial, channels]``).

    Returns ``[batch, *out, prod(kernel_size) * channels]`` with
    ``out = ceil(spatial / strides)``; the last axis runs over kernel offsets
    (row-major) and then channels, as a flattened ``nn.Conv`` kernel does.
    """
    spatial = x.shape[1:-1]
    out = [-(-n // s) for n, s in zip(spatial, strides, strict=True)]  # ceil(n / s)
    pads = [
        max((o - 1) * s + k - n, 0)
        for o, s, k, n in zip(out, strides, kernel_size, spatial, strict=True)
    ]
    x = jnp.pad(x, [(0, 0)] + [(p // 2, p - p // 2) for p in pads] + [(0, 0)])

    def window(offset):  # every stride-th position, starting at offset
        ends = [i + (o - 1) * s + 1 for i, o, s in zip(offset, out, strides, strict=True)]
        return jax.lax.slice(x, (0, *offset, 0), (x.shape[0], *ends, x.shape[-1]), (1, *strides, 1))

    offsets = itertools.product(*[range(k) for k in kernel_size])
    return jnp.concatenate([window(offset) for offset in offsets], axis=-1)


class MLP(nn.Module):
    """Flattens its input, then ``Dense -> ReLU`` per hidden width, then a linear head."""

    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no train-time behaviour
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class CNN(nn.Module):
    """``[conv 3x3 -> ReLU -> max-pool 2x2]`` per channel width, then an MLP head.

    With ``channels=(32, 64)`` and ``hidden=256`` this is the small CNN of
    Marfinetz 2025. ``hidden=0`` drops the hidden dense layer.
    ``patch_conv`` computes the convolutions with :class:`PatchConv`, and
    ``pool=False`` replaces each conv + max-pool by a stride-2 conv: both
    for populations trained on CPU, where vmapped convolutions and max-pool
    gradients are slow.
    """

    channels: Sequence[int]
    hidden: int
    num_classes: int
    patch_conv: bool = False
    pool: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        conv = PatchConv if self.patch_conv else nn.Conv
        for i, width in enumerate(self.channels):
            if self.pool:
                x = nn.relu(conv(width, (3, 3), name=f"Conv_{i}")(x))
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = nn.relu(conv(width, (3, 3), strides=(2, 2), name=f"Conv_{i}")(x))
        x = x.reshape((x.shape[0], -1))
        if self.hidden:
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


class BatchNormCNN(nn.Module):
    """Blocks of ``2 x [conv 3x3 -> BatchNorm -> ReLU] -> max-pool 2x2``, then an MLP head.

    With ``channels=(32, 64)`` and ``hidden=512`` this is the 2-block
    BatchNorm CNN of Marfinetz 2025. BatchNorm uses batch statistics when
    ``train`` (updating the running averages in ``batch_stats``) and the
    running averages otherwise. ``patch_conv`` computes the convolutions with
    :class:`PatchConv` (same variables and function), for populations trained
    on CPU.
    """

    channels: Sequence[int] = (32, 64)
    hidden: int = 512
    num_classes: int = 10
    momentum: float = 0.9
    patch_conv: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        conv = PatchConv if self.patch_conv else nn.Conv
        for i, width in enumerate(self.channels):
            for j in range(2):
                x = conv(width, (3, 3), use_bias=False, name=f"Conv_{2 * i + j}")(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(x)
                x = nn.relu(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


class CNN1D(nn.Module):
    """``[conv1d (kernel 5, stride 2) -> ReLU]`` per channel width, then a linear head.

    A small version of the convolutional baseline of MNIST-1D (Greydanus,
    "Scaling down deep learning", arXiv 2011.14439). Takes ``[batch, length]``
    signals (or ``[batch, length, channels]``). The convolutions are
    :class:`PatchConv` (the model is meant for CPU populations).
    """

    channels: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        if x.ndim == 2:
            x = x[..., None]
        for i, width in enumerate(self.channels):
            x = nn.relu(PatchConv(width, (5,), strides=(2,), name=f"Conv_{i}")(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes)(x)


# --------------------------------------------------------------------------
# Models of the task suite (symopt.tasks.suite, .sequences): a choice of activation, and
# sequence models over integer tokens (stored as floats, as every task's
# inputs are; the models cast them back).

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "silu": nn.silu}


def activation(name: str):
    """The activation function called ``name`` (a key of :data:`ACTIVATIONS`).

    Raises:
      ValueError: an unknown name.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class ActivationMLP(nn.Module):
    """:class:`MLP` with a choice of activation and ``outputs`` linear outputs."""

    hidden: Sequence[int]
    outputs: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        act = activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.outputs)(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention from one fused ``qkv`` Dense and an output Dense.

    Written with ``nn.Dense`` (rather than ``nn.MultiHeadDotProductAttention``,
    whose ``DenseGeneral`` kernels have a fan-in that
    :func:`symopt.tasks.base.init_variables` would miscount) so that its
    parameters take the default initializers. ``causal`` masks attention to
    later positions.
    """

    heads: int
    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, width = x.shape
        if width % self.heads:
            raise ValueError(f"width {width} is not a multiple of heads {self.heads}")
        head_dim = width // self.heads
        qkv = nn.Dense(3 * width, name="qkv")(x).reshape(batch, length, 3, self.heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
        if self.causal:
            mask = jnp.tril(jnp.ones((length, length), bool))
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, width)
        return nn.Dense(width, name="out")(out)


class Transformer(nn.Module):
    """A pre-LayerNorm transformer: per-position logits over ``num_classes``.

    Token and learned positional embeddings (``nn.Embed``), ``depth`` blocks
    of ``x + attention(LN(x))`` and ``x + MLP(LN(x))`` (hidden width
    ``mlp_ratio * width``), a final LayerNorm and a linear head. Takes
    ``[batch, length]`` tokens (cast to int32).
    """

    vocab: int
    length: int
    width: int
    depth: int
    heads: int
    num_classes: int
    causal: bool = False
    mlp_ratio: int = 2
    activation: str = "gelu"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        act = activation(self.activation)
        tokens = x.astype(jnp.int32)
        h = nn.Embed(self.vocab, self.width, name="token")(tokens)
        h = h + nn.Embed(self.length, self.width, name="position")(jnp.arange(tokens.shape[1]))
        for i in range(self.depth):
            h = h + SelfAttention(self.heads, self.causal, name=f"attention_{i}")(
                nn.LayerNorm(name=f"ln_attention_{i}")(h)
            )
            y = nn.LayerNorm(name=f"ln_mlp_{i}")(h)
            y = nn.Dense(self.mlp_ratio * self.width, name=f"mlp_in_{i}")(y)
            h = h + nn.Dense(self.width, name=f"mlp_out_{i}")(act(y))
        return nn.Dense(self.num_classes, name="head")(nn.LayerNorm(name="ln_final")(h))


class _Kernel(nn.Module):
    """A bare ``kernel`` parameter (LeCun normal), for weights used inside ``lax.scan``."""

    shape: Sequence[int]

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("kernel", nn.initializers.lecun_normal(), tuple(self.shape))


class GRU(nn.Module):
    """A GRU over one-hot tokens, unrolled with ``lax.scan``: per-position logits.

    The input projections of all positions are one ``Dense(3 * hidden)`` (with
    the gate biases) outside the loop; the recurrence ``h @ W`` (``W`` of shape
    ``[hidden, 3 * hidden]``, no bias) runs in ``lax.scan``. Gates as in
    ``flax.linen.GRUCell``: ``r, z = sigmoid(.)``, ``n = tanh(x_n + r * h W_n)``,
    ``h' = (1 - z) * n + z * h``, from ``h = 0``. Takes ``[batch, length]``
    tokens (cast to int32) in ``[0, vocab)``.
    """

    vocab: int
    hidden: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        inputs = jax.nn.one_hot(x.astype(jnp.int32), self.vocab, dtype=jnp.float32)
        gates_x = nn.Dense(3 * self.hidden, name="input")(inputs)  # [batch, length, 3h]
        recurrent = _Kernel((self.hidden, 3 * self.hidden), name="recurrent")()

        def cell(h, gx):
            xr, xz, xn = jnp.split(gx, 3, axis=-1)
            hr, hz, hn = jnp.split(h @ recurrent, 3, axis=-1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            h = (1.0 - z) * jnp.tanh(xn + r * hn) + z * h
            return h, h

        h0 = jnp.zeros((x.shape[0], self.hidden), gates_x.dtype)
        _, hs = jax.lax.scan(cell, h0, jnp.swapaxes(gates_x, 0, 1))
        return nn.Dense(self.num_classes, name="head")(jnp.swapaxes(hs, 0, 1))
