"""Flax linen models for the tasks: MLPs and small ConvNets.

Every model is called as ``model(x, train=...)`` and returns logits, so that
:func:`symopt.tasks.base.classification_task` can treat them alike; only
:class:`BatchNormCNN` keeps state (the ``batch_stats`` collection).

The image models follow the tasks of Marfinetz, "Evolving Deep Learning
Optimizers" (arXiv 2512.11853; REFERENCES.md A): a small CNN (conv 32,
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
    which is several times faster on CPU. The patches take ``prod(kernel_size)``
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
    REFERENCES.md A. ``hidden=0`` drops the hidden dense layer.
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
    BatchNorm CNN of REFERENCES.md A. BatchNorm uses batch statistics when
    ``train`` (updating the running averages in ``batch_stats``) and the
    running averages otherwise.
    """

    channels: Sequence[int] = (32, 64)
    hidden: int = 512
    num_classes: int = 10
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for width in self.channels:
            for _ in range(2):
                x = nn.Conv(width, (3, 3), use_bias=False)(x)
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
