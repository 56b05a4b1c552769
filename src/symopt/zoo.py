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
Learning Optimizers": ``terms_ga``); Jordan et al. 2024 (Muon, "Muon: An
optimizer for hidden layers in neural networks"); You et al. 2020 (LAMB,
"Large Batch Optimization for Deep Learning: Training BERT in 76 minutes");
Shazeer & Stern 2018 (Adafactor, "Adafactor: Adaptive Learning Rates with
Sublinear Memory Cost").

The last three read whole parameter tensors through the per-leaf operators
of :mod:`symopt.ops` (``orth``, ``trust``, ``if_matrix``, ``rms`` ...); a
population that trains them needs ``ProgramShape(leaf_ops=True)``
(:func:`symopt.measure.shape_for` sets it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from symopt.graph import Graph, Hyperparams, Schedule, canonical, nodes, simple
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


@_register
def muon(**hparams: Any) -> Graph:
    """Muon (Jordan et al. 2024), as ``optax.contrib.muon(learning_rate)`` with all
    its defaults.

    On a 2-D leaf, Nesterov momentum with beta = 0.95, bias-corrected as optax
    does (``t`` 0-based, ``mu`` the EMA of ``g``, with no correction in the
    state)::

        mu_hat = beta * mu / (1 - beta^(t+2)) + (1 - beta) * g / (1 - beta^(t+1))
        d = orth(mu_hat)

    (``orth`` is Muon's Newton-Schulz orthogonalisation and width scale,
    :func:`symopt.ops.orth`). On every other leaf (biases, scales, conv
    kernels) ``optax.adamw(lr, b1, b2, eps, weight_decay=0, nesterov=True)``,
    i.e. NAdam: the same ``mu_hat`` with ``b1`` in place of ``beta``, and
    ``d = mu_hat / (sqrt(v_hat) + eps)``, ``v_hat`` the bias-corrected EMA of
    ``g^2`` with ``b2`` (the ``v`` operand).

    The graph writes both branches with one momentum: ``n0 = if_matrix(c0, c1)``
    is beta on a 2-D leaf and b1 on the others. Two recurrent states carry the
    unnormalised sums ``U = beta*U + g`` (``U = mu / (1-beta)``) and
    ``tau = 1 + beta*tau`` (``tau = (1-beta^(t+1)) / (1-beta)``), each stored
    times beta, so that ``mu_hat = beta*U/tau' + g/tau`` with
    ``tau' = 1 + beta*tau``; the root is ``if_matrix(orth(mu_hat), nadam)``::

        n0 = if_matrix(c0, c1)      beta per leaf
        n1 = g + s0                 U
        n2 = n0 * n1                beta*U        -> s0
        n3 = one + s1               tau
        n4 = n0 * n3                beta*tau      -> s1
        n5 = one + n4               tau'
        n6 = n2 / n5
        n7 = g / n3
        n8 = n6 + n7                mu_hat
        n9 = sqrt|v| + c2           sqrt(v_hat) + eps
        n10 = n8 / n9               NAdam's direction
        n11 = if_matrix(orth(n8), n10)

    Constants ``c0, c1, c2`` are beta, b1 and eps: keyword arguments ``beta``
    (0.95), ``beta1`` (0.9) and ``eps`` (1e-8) set them (``hparams.beta1`` and
    ``hparams.eps`` record the same values; the graph reads the constants),
    ``beta2`` (0.999) sets b2; they are optax's ``beta``, ``adam_b1``, ``eps``
    and ``adam_b2``. optax's ``eps`` also enters its Frobenius normalisation
    before Newton-Schulz, where ``orth`` keeps :data:`symopt.ops.NS_EPS`
    (1e-8): with another ``eps`` the 2-D leaves differ from optax's by that
    much. The default learning rate, 0.02, is Jordan et al.'s for Muon (optax
    has none); as in ``optax.contrib.muon`` it is also the Adam branch's.
    Weight decay (default 0, as optax's) is the graph's decoupled decay on
    every leaf, where optax's ``weight_decay`` applies to the 2-D leaves only
    (and ``adam_weight_decay`` to the others).

    Two variants, which the novelty test matches (:data:`symopt.novelty.GRIDS`):
    ``nesterov=False`` is optax's ``nesterov=False``: both branches read the
    bias-corrected momentum ``mu_hat = U / tau`` itself (``n8 = n1 / n3``).
    ``every_leaf=True`` orthogonalises every leaf, as its matrix view
    (:func:`symopt.ops.as_matrix`: a conv kernel as ``[k*k*in, out]``, a bias
    as one row), with momentum ``beta`` on every leaf and no Adam branch
    (``beta1``, ``beta2`` and ``eps`` unused): Muon as its authors run
    ConvNets' kernels, extended to biases and scales.
    """
    beta = hparams.pop("beta", 0.95)
    b1 = hparams.pop("beta1", 0.9)
    eps = hparams.pop("eps", 1e-8)
    nesterov = hparams.pop("nesterov", True)
    every_leaf = hparams.pop("every_leaf", False)
    defaults = {"learning_rate": 0.02, "beta1": b1, "beta2": 0.999, "eps": eps,
                "bias_correction": True}
    mu_hat = (("add", "identity", "n6", "identity", "n7") if nesterov
              else ("div", "identity", "n1", "identity", "n3"))
    root = (("keep_left", "orth", "n8", "identity", "n8") if every_leaf
            else ("if_matrix", "orth", "n8", "identity", "n10"))
    graph = Graph(
        update=nodes(
            ("if_matrix", "identity", "c0", "identity", "c1"),
            ("add", "identity", "g", "identity", "s0"),
            ("mul", "identity", "n0", "identity", "n1"),
            ("add", "identity", "one", "identity", "s1"),
            ("mul", "identity", "n0", "identity", "n3"),
            ("add", "identity", "one", "identity", "n4"),
            ("div", "identity", "n2", "identity", "n5"),
            ("div", "identity", "g", "identity", "n3"),
            mu_hat,
            ("add", "sqrt_abs", "v", "identity", "c2"),
            ("div", "identity", "n8", "identity", "n9"),
            root,
        ),
        states=("n2", "n4"),
        constants=(beta, beta if every_leaf else b1, eps),
        hparams=_h(defaults, hparams),
    )
    # The default keeps the node layout the docstring draws; a variant drops
    # the nodes it leaves dead (the Nesterov terms, the Adam branch).
    return graph if nesterov and not every_leaf else canonical(graph)


@_register
def lamb(**hparams: Any) -> Graph:
    """LAMB (You et al. 2020), as ``optax.lamb(learning_rate)`` with its defaults.

    Adam's direction (b1 = 0.9, b2 = 0.999, eps = 1e-6, bias-corrected) plus
    ``weight_decay * w``, scaled per leaf by the trust ratio ``|w| / |u|``
    (``optax.scale_by_trust_ratio``: 1 where either norm is 0)::

        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w
        d = trust(u, w) = u * |w| / |u|

    The language has no plain ``w`` operand: ``n0 = c0 * w_0.1`` with
    ``c0 = 10`` is ``w``. With the default ``weight_decay=0`` the graph is
    ``n0 = c0 * w_0.1; n1 = trust(adam, n0)``; a ``weight_decay`` keyword adds
    the decay inside the trust ratio, where LAMB and optax put it
    (``n1 = c1 * n0; n2 = adam + n1; n3 = trust(n2, n0)``, ``c1`` the decay),
    so the graph equals ``optax.lamb(lr, weight_decay=wd)`` too, and its
    ``hparams.weight_decay`` stays 0. (Setting ``hparams.weight_decay`` on
    the graph afterwards gives the graph's usual decoupled decay, outside the
    trust ratio: not LAMB's.) The default learning rate, 1e-3, is ours
    (optax has none).
    """
    wd = hparams.pop("weight_decay", 0.0)
    defaults = {"learning_rate": 1e-3, "eps": 1e-6}
    if wd == 0:
        update = nodes(
            ("mul", "identity", "c0", "identity", "w_0.1"),
            ("trust", "identity", "adam", "identity", "n0"),
        )
        constants: tuple[float, ...] = (10.0,)
    else:
        update = nodes(
            ("mul", "identity", "c0", "identity", "w_0.1"),
            ("mul", "identity", "c1", "identity", "n0"),
            ("add", "identity", "adam", "identity", "n1"),
            ("trust", "identity", "n2", "identity", "n0"),
        )
        constants = (10.0, wd)
    return Graph(update=update, constants=constants, hparams=_h(defaults, hparams))


@_register
def adafactor(**hparams: Any) -> Graph:
    """Adafactor (Shazeer & Stern 2018), as close to ``optax.adafactor`` as the
    graph language allows.

    With ``k = t + 1`` (``t`` the 0-based step)::

        v = (1 - k^-0.8) * v + k^-0.8 * (g^2 + 1e-30)      v = g^2 + 1e-30 at t = 0
        u = g * sqrt(mean(v) / (rowmean(v) * colmean(v)))  the factored estimate
        u = u / max(1, rms(u))                             update clipping at 1
        d = u * max(rms(w), 1e-3)                          multiply_by_parameter_scale

    as optax's defaults (``decay_rate=0.8``, ``eps=1e-30``,
    ``clipping_threshold=1``, ``multiply_by_parameter_scale=True``, no
    momentum, no weight decay). Row and column means are those of the leaf's
    matrix view (:func:`symopt.ops.as_matrix`), computed as
    ``rms_rows(sqrt|v|)^2`` etc.; on a vector (the row ``[1, n]``) and a scalar
    the estimate is ``v`` itself, which is Adafactor's unfactored case. A
    step-counter state ``s0`` (``k``) gives the decay ``k^-0.8 = pow(k, c0)``
    and a second state ``s1`` holds ``v``::

        n0 = one + s0              k            -> s0
        n1 = pow(n0, c0)           k^-0.8
        n2 = g2 + c1               g^2 + 1e-30
        n3 = n2 - s1
        n4 = n1 * n3
        n5 = s1 + n4               v            -> s1
        n6 = keep_left(sqrt|n5|)   sqrt(v)
        n7 = rms_rows(n6) * rms_cols(n6)
        n8 = rms(n6) / n7
        n9 = g * n8                u
        n10 = max(one, rms(n9))
        n11 = c2 * w_0.1           w
        n12 = max(rms(n11), c3)
        n13 = n12 / n10
        n14 = n9 * n13

    Constants: ``c0 = -decay_rate``, ``c1 = eps``, ``c2 = 10``, ``c3 = 1e-3``;
    keyword arguments ``decay_rate`` (0.8) and ``eps`` (1e-30) set them.

    What differs from ``optax.adafactor``:

    * optax factors only a leaf whose two largest dimensions are both at least
      ``min_dim_size_to_factor`` (default 128), and on a leaf of more than two
      dimensions factors those two (the others batch). The graph factors every
      leaf of two or more dimensions, over its matrix view
      ``[prod(shape[:-1]), shape[-1]]``. So it equals optax on a 2-D leaf
      whose dimensions are both at least ``min_dim_size_to_factor`` and on
      every vector and scalar; on a smaller 2-D leaf optax's default keeps a
      full, unfactored ``v`` and the graph does not; on a conv kernel it
      equals optax run on the kernel reshaped to its matrix view.
    * The graph stores a params-shaped ``v`` (the state ``s1``) and derives
      the row and column means from it at each step: the same estimate, since
      an EMA commutes with a mean, but none of Adafactor's memory saving.
    * optax's ``learning_rate`` defaults to None (a step of 1 times the
      parameter scale); the graph's default is 1e-2, the cap of the paper's
      relative step size ``min(1e-2, 1/sqrt(t))``. Weight decay is the
      graph's decoupled decay, scaled by the learning rate (optax's
      ``weight_decay_rate`` is not), and optax's ``momentum`` (an EMA of the
      updates) has no counterpart here.
    """
    decay_rate = hparams.pop("decay_rate", 0.8)
    eps = hparams.pop("eps", 1e-30)
    defaults = {"learning_rate": 1e-2, "eps": eps, "bias_correction": False}
    return Graph(
        update=nodes(
            ("add", "identity", "one", "identity", "s0"),
            ("pow", "identity", "n0", "identity", "c0"),
            ("add", "identity", "g2", "identity", "c1"),
            ("sub", "identity", "n2", "identity", "s1"),
            ("mul", "identity", "n1", "identity", "n3"),
            ("add", "identity", "s1", "identity", "n4"),
            ("keep_left", "sqrt_abs", "n5", "identity", "n5"),
            ("mul", "rms_rows", "n6", "rms_cols", "n6"),
            ("div", "rms", "n6", "identity", "n7"),
            ("mul", "identity", "g", "identity", "n8"),
            ("max", "identity", "one", "rms", "n9"),
            ("mul", "identity", "c2", "identity", "w_0.1"),
            ("max", "rms", "n11", "identity", "c3"),
            ("div", "identity", "n12", "identity", "n10"),
            ("mul", "identity", "n9", "identity", "n13"),
        ),
        states=("n0", "n5"),
        constants=(-decay_rate, eps, 10.0, 1e-3),
        hparams=_h(defaults, hparams),
    )


# --------------------------------------------------------------------------
# The published discoveries, and what ``symopt.transfer`` compares with.

PUBLISHED = ("signum", "addsign", "powersign", "ades", "autolr_sign", "terms_ga")
"""The published discoveries among the optimizers above."""
TRANSFER = ("sgd", "momentum", "adam", "adamw", "lion", *PUBLISHED)
"""The optimizers ``symopt.transfer`` compares found graphs with by default."""


@_register
def driftprop(**hparams: Any) -> Graph:
    """DriftProp: found by symopt, not published (``docs/discoveries.md``).

    The winner of ``experiments/discover.py`` with no zoo seeds, search seed 0
    (``python experiments/benchmark_search.py --part=quality --unseeded``),
    pruned::

        d = if_matrix(g / sqrt(v + eps), c)      c = -0.0757
        momentum: Nesterov (0.9) on d; schedule: linear decay to 0.1x after
        100 warmup steps; beta2 0.9, no bias correction

    On matrices (dense kernels, and conv kernels read as matrices) it is
    RMSProp's direction with Nesterov momentum. Every other leaf (biases,
    norm scales) takes a constant step whatever its gradient: since the
    direction is subtracted, they drift upward, by about ``10 * 0.0757 * lr``
    a step (times the schedule) once the momentum has settled. The novelty
    test judges it new (nearest: Adam, similarity 0.68). ``drift`` sets ``c``
    (the upward drift is ``-drift``).
    """
    drift = hparams.pop("drift", -0.0757)
    defaults = {"learning_rate": 0.0042, "beta1": 0.5, "beta2": 0.9, "bias_correction": False}
    return Graph(
        update=nodes(("if_matrix", "identity", "rmsprop", "identity", "c0"), root="n0"),
        constants=(drift,),
        schedule=Schedule(kind="linear", warmup_steps=100, alpha=0.1),
        momentum="nesterov",
        hparams=_h(defaults, hparams),
    )


@_register
def orthadam(**hparams: Any) -> Graph:
    """OrthAdam: found by symopt's search (``docs/discoveries.md``, which also
    says what published work it is close to).

    Adam's direction, orthogonalised on every leaf (candidate #482 of
    ``experiments/discover.py``'s run with the digits ConvNet among its search
    tasks, search seed 0, a child of the Muon seed), pruned::

        m <- beta1 m + (1 - beta1) g        beta1 0.5
        v <- beta2 v + (1 - beta2) g^2      beta2 0.999
        d = orth(m_hat / (sqrt(v_hat) + eps))

    ``orth`` (:func:`symopt.ops.orth`) is Muon's Newton-Schulz
    orthogonalisation of the leaf's matrix view: a dense kernel as it is, a
    conv kernel as ``[h*w*in, out]``, a bias or scale as one row, which moves
    by a fixed RMS (about 0.7, where Newton-Schulz takes a single singular
    value) whatever its gradient's scale. The rate follows a cosine decay to
    0 after 10 warmup steps, with decoupled weight decay 0.01. Where Muon
    orthogonalises the momentum of matrices only and runs Adam on the other
    leaves, OrthAdam equalises the gradient's scale element by element first
    (Adam's preconditioner, with a short momentum) and orthogonalises what
    results on every leaf. The novelty test judges it new (nearest: Adam, 0.93).
    """
    defaults = {"learning_rate": 0.1121577, "beta1": 0.5, "beta2": 0.999,
                "weight_decay": 0.01, "bias_correction": True}
    return Graph(
        update=nodes(("keep_left", "orth", "adam", "identity", "adam")),
        schedule=Schedule(kind="cosine", warmup_steps=10),
        hparams=_h(defaults, hparams),
    )
