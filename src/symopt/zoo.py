"""Known optimizers written as Graphs.

Default hyperparameters equal optax's defaults for the optimizer of the same
name, so ``to_optax(zoo.adam(), learning_rate=lr)`` and ``optax.adam(lr)`` give
the same updates (``tests/test_zoo.py`` checks every one optax has; the
others against their papers' formulas). Keyword arguments override the
hyperparameters, e.g. ``zoo.adam(beta1=0.95)``.

Sources: Kingma & Ba 2015 (Adam); Loshchilov & Hutter 2019 (AdamW);
Tieleman & Hinton 2012 (RMSProp); Bernstein et al. 2018 (signSGD, Signum);
Bello et al. 2017 (AddSign, PowerSign); Chen et al. 2023 (Lion); Carvalho et
al. 2022 (AutoLR: ADES and its sign optimizer); Marfinetz 2025 ("Evolving Deep
Learning Optimizers": ``terms_ga``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from symopt.graph import Graph, Hyperparams, Schedule, nodes, simple
from symopt.registry import Registry

OPTIMIZERS: Registry[Callable[..., Graph]] = Registry("zoo optimizer")
"""The functions below, by name, in the order they are defined."""


def _register(fn: Callable[..., Graph]) -> Callable[..., Graph]:
    return OPTIMIZERS.register(fn.__name__, fn)


def names() -> list[str]:
    """The zoo's optimizer names, in registration order."""
    return OPTIMIZERS.names()


def get(name: str, **hparams: Any) -> Graph:
    """The zoo optimizer ``name``; raises KeyError (a
    :class:`~symopt.registry.UnknownNameError`, also a ValueError) naming the
    known ones."""
    return OPTIMIZERS.get(name)(**hparams)


def _h(defaults: dict[str, Any], overrides: dict[str, Any]) -> Hyperparams:
    return Hyperparams(**{**defaults, **overrides})


@_register
def sgd(**hparams: Any) -> Graph:
    """Plain SGD: ``d = g`` (``optax.sgd``)."""
    return simple("g", hparams=_h({"learning_rate": 1e-2}, hparams))


@_register
def momentum(**hparams: Any) -> Graph:
    """Heavy-ball momentum 0.9 (``optax.sgd(lr, momentum=0.9)``)."""
    return simple("g", momentum="classical", hparams=_h({"learning_rate": 1e-2}, hparams))


@_register
def nesterov(**hparams: Any) -> Graph:
    """Nesterov momentum 0.9 (``optax.sgd(lr, momentum=0.9, nesterov=True)``)."""
    return simple("g", momentum="nesterov", hparams=_h({"learning_rate": 1e-2}, hparams))


@_register
def rmsprop(**hparams: Any) -> Graph:
    """RMSProp, ``g / sqrt(v + eps)`` with decay 0.9 (``optax.rmsprop``)."""
    defaults = {"learning_rate": 1e-3, "beta2": 0.9, "bias_correction": False}
    return simple("rmsprop", hparams=_h(defaults, hparams))


@_register
def adam(**hparams: Any) -> Graph:
    """Adam, ``m_hat / (sqrt(v_hat) + eps)`` (``optax.adam``)."""
    return simple("adam", hparams=_h({}, hparams))


@_register
def adamw(**hparams: Any) -> Graph:
    """AdamW: Adam with decoupled weight decay 1e-4 (``optax.adamw``)."""
    return simple("adam", hparams=_h({"weight_decay": 1e-4}, hparams))


@_register
def lion(**hparams: Any) -> Graph:
    """Lion (Chen et al. 2023), as ``optax.lion``.

    ``d = sign(b1*s0 + (1-b1)*g)``, then ``s0 <- b2*s0 + (1-b2)*g``: Lion
    interpolates with the momentum *before* updating it, so the momentum is a
    recurrent state of the graph rather than the ``m`` operand. Constants
    ``c0..c3`` are b1, 1 - b1, b2, 1 - b2; ``beta1``/``beta2`` keyword
    arguments set b1/b2 (default 0.9/0.99, as ``optax.lion``).
    """
    b1, b2 = hparams.pop("beta1", 0.9), hparams.pop("beta2", 0.99)
    defaults = {"learning_rate": 1e-4, "weight_decay": 1e-3}
    return Graph(
        update=nodes(
            ("mul", "identity", "c0", "identity", "s0"),
            ("mul", "identity", "c1", "identity", "g"),
            ("add", "identity", "n0", "identity", "n1"),
            ("keep_left", "sign", "n2", "identity", "n2"),
            ("mul", "identity", "c2", "identity", "s0"),
            ("mul", "identity", "c3", "identity", "g"),
            ("add", "identity", "n4", "identity", "n5"),
            root="n3",
        ),
        states=("n6",),
        constants=(b1, 1 - b1, b2, 1 - b2),
        hparams=_h(defaults, hparams),
    )


@_register
def signsgd(**hparams: Any) -> Graph:
    """signSGD: ``d = sign(g)`` (``optax.sign_sgd``)."""
    return simple("sign_g", hparams=_h({"learning_rate": 1e-3}, hparams))


@_register
def signum(**hparams: Any) -> Graph:
    """Signum: ``d = sign(m)``, ``m`` an EMA with 0.9 (``optax.signum``)."""
    defaults = {"learning_rate": 1e-3, "bias_correction": False}
    return simple("sign_m", hparams=_h(defaults, hparams))


@_register
def addsign(**hparams: Any) -> Graph:
    """AddSign (Bello et al. 2017): ``d = (1 + sign(g)*sign(m)) * g``."""
    defaults = {"learning_rate": 1e-2, "bias_correction": False}
    return Graph(
        update=nodes(
            ("mul", "identity", "sign_g", "identity", "sign_m"),
            ("add", "identity", "one", "identity", "n0"),
            ("mul", "identity", "n1", "identity", "g"),
        ),
        hparams=_h(defaults, hparams),
    )


@_register
def powersign(**hparams: Any) -> Graph:
    """PowerSign (Bello et al. 2017): ``d = exp(sign(g)*sign(m)) * g``."""
    defaults = {"learning_rate": 1e-2, "bias_correction": False}
    return Graph(
        update=nodes(
            ("mul", "identity", "sign_g", "identity", "sign_m"),
            ("mul", "exp", "n0", "identity", "g"),
        ),
        hparams=_h(defaults, hparams),
    )


@_register
def ades(**hparams: Any) -> Graph:
    """ADES (AutoLR, Carvalho et al. 2022), with the published constants.

    ``alpha <- alpha - (1-b1)*(alpha + (alpha+b2)*(alpha+g)); w <- w + alpha``
    with b1 = 0.08922, b2 = 0.0891. With learning rate 1 the graph's
    recurrent state ``s0`` is ``-alpha``, the direction ``d = -alpha_new``:
    ``d = s0 + (1-b1)*((b2 - s0)*(g - s0) - s0)``.
    """
    b1, b2 = 0.08922, 0.0891
    defaults = {"learning_rate": 1.0}
    return Graph(
        update=nodes(
            ("sub", "identity", "c1", "identity", "s0"),  # b2 - s0
            ("sub", "identity", "g", "identity", "s0"),  # g - s0
            ("mul", "identity", "n0", "identity", "n1"),
            ("sub", "identity", "n2", "identity", "s0"),
            ("mul", "identity", "c0", "identity", "n3"),
            ("add", "identity", "s0", "identity", "n4"),
        ),
        states=("n5",),
        constants=(1 - b1, b2),
        hparams=_h(defaults, hparams),
    )


@_register
def autolr_sign(**hparams: Any) -> Graph:
    """AutoLR's evolved sign optimizer: ``w <- w - 0.0009*sign(g)``."""
    return simple("sign_g", hparams=_h({"learning_rate": 0.0009}, hparams))


@_register
def terms_ga(**hparams: Any) -> Graph:
    """The best optimizer of the primitive-terms GA (Marfinetz 2025).

    ``d = 0.7345*sign(g) + 3.6352*m/(sqrt(v)+eps)`` without bias correction,
    decoupled weight decay 9.7e-4, 100 warmup steps, then cosine decay to 0.
    """
    defaults = {"learning_rate": 1.2e-3, "beta1": 0.8553, "beta2": 0.9358, "eps": 5.4e-9,
                "weight_decay": 9.7e-4, "bias_correction": False}
    return Graph(
        update=nodes(
            ("mul", "identity", "c0", "identity", "sign_g"),
            ("mul", "identity", "c1", "identity", "adam"),
            ("add", "identity", "n0", "identity", "n1"),
        ),
        constants=(0.7345, 3.6352),
        schedule=Schedule(kind="cosine", warmup_steps=100),
        hparams=_h(defaults, hparams),
    )


# --------------------------------------------------------------------------
# The published discoveries, and what ``symopt.transfer`` compares with.

PUBLISHED = ("signum", "addsign", "powersign", "ades", "autolr_sign", "terms_ga")
"""The published discoveries among the optimizers above."""
TRANSFER = ("sgd", "momentum", "adam", "adamw", "lion", *PUBLISHED)
"""The optimizers ``symopt.transfer`` compares found graphs with by default."""
