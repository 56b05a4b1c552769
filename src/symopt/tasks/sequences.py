"""Token-sequence tasks of the offline suite: ``seq_transformer`` and ``seq_rnn``.

Per-token classification of short token sequences (:func:`load_sequences`):
by default a causal language model of an order-2 Markov chain, or the
algorithmic problems running sum, reverse and sort, learnt by a
pre-LayerNorm transformer (:func:`seq_transformer`) or a GRU
(:func:`seq_rnn`). Models and losses an optimizer found on MLPs and
ConvNets was not searched on (see :mod:`symopt.tasks.suite` for the other
families of the suite). All data is generated deterministically from a
NumPy seed and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from flax import linen as nn

from symopt.tasks import models
from symopt.tasks.base import Data, Task, classification_task, reparametrize, to_device

Draw = Callable[[int], tuple[np.ndarray, np.ndarray]]  # n -> (x [n, length], y [n, length])


def _uniform_inputs(target: Callable[[np.ndarray, int], np.ndarray]):
    """A problem whose inputs are uniform tokens and targets ``target(x, vocab)``."""

    def make(rng: np.random.Generator, length: int, vocab: int) -> Draw:
        def draw(n):
            x = rng.integers(0, vocab, (n, length))
            return x, target(x, vocab)

        return draw

    return make


MARKOV_CONCENTRATION = 0.1  # Dirichlet parameter of the transition probabilities


def _markov_chain(rng: np.random.Generator, length: int, vocab: int) -> Draw:
    """Next-token prediction on an order-2 Markov chain with a random transition table.

    ``p(x_t | x_{t-2}, x_{t-1})`` is drawn once per table row from a
    ``Dirichlet(0.1)``: peaked, and a model must look at the previous two
    tokens to use it. The first two tokens are uniform. The chain is random,
    so no model predicts it exactly: the true probabilities' loss and
    accuracy are the floor and the ceiling a model can reach.
    """
    table = rng.dirichlet(np.full(vocab, MARKOV_CONCENTRATION), size=(vocab, vocab))
    cumulative = np.cumsum(table, axis=-1)

    def draw(n):
        rows = np.empty((n, length + 1), np.int64)
        rows[:, :2] = rng.integers(0, vocab, (n, 2))
        for t in range(2, length + 1):
            u = rng.random((n, 1))
            rows[:, t] = (cumulative[rows[:, t - 2], rows[:, t - 1]] < u).sum(axis=1)
        np.minimum(rows, vocab - 1, out=rows)  # rounding in the last cumulative sum
        return rows[:, :-1], rows[:, 1:]

    return draw


# problem -> (rng, length, vocab) -> draw
SEQUENCE_PROBLEMS: dict[str, Callable[[np.random.Generator, int, int], Draw]] = {
    "markov": _markov_chain,
    "running_sum": _uniform_inputs(lambda x, vocab: np.cumsum(x, axis=1) % vocab),
    "reverse": _uniform_inputs(lambda x, vocab: x[:, ::-1]),
    "sort": _uniform_inputs(lambda x, vocab: np.sort(x, axis=1)),
}
CAUSAL_PROBLEMS = ("markov", "running_sum")  # the target at t depends on inputs up to t only
SEQUENCE_SPLITS = {"train": 2000, "val": 500, "test": 500}


def _check_sequence_options(problem: str, length: int, vocab: int) -> None:
    if problem not in SEQUENCE_PROBLEMS:
        raise ValueError(f"unknown problem {problem!r}; known: {', '.join(SEQUENCE_PROBLEMS)}")
    if length < 2 or vocab < 2:
        raise ValueError(f"need length >= 2 and vocab >= 2, got {length} and {vocab}")
    needed = sum(SEQUENCE_SPLITS.values())
    if vocab**length < needed:
        raise ValueError(f"vocab**length = {vocab**length} sequences; the splits need {needed}")


@functools.cache
def load_sequences(problem: str, length: int, vocab: int, seed: int = 0) -> Data:
    """Distinct token sequences and their targets, one target token per position.

    ``x`` is ``[n, length]`` tokens in ``[0, vocab)`` (stored as float32, like
    every task's inputs), all distinct across the splits (2000 train, 500
    val, 500 test), drawn from ``numpy.random.default_rng(seed)``; ``y`` is
    ``[n, length]`` int32:

    * ``"markov"``: the next token of an order-2 Markov chain
      (:func:`_markov_chain`; language modelling, needs causal attention);
    * ``"running_sum"``: the prefix sums of uniform tokens mod ``vocab``
      (the running parity for ``vocab=2``);
    * ``"reverse"`` / ``"sort"``: the uniform input sequence reversed / sorted.

    The targets of the last three are functions of the sequence: a model
    that learns the rule generalises to the held-out sequences.

    Raises:
      ValueError: fewer distinct sequences than the splits need (a short
        ``"markov"`` chain over few tokens is too predictable to have them).
    """
    _check_sequence_options(problem, length, vocab)
    rng = np.random.default_rng(seed)
    draw = SEQUENCE_PROBLEMS[problem](rng, length, vocab)
    needed = sum(SEQUENCE_SPLITS.values())
    x, y = np.empty((0, length), np.int64), np.empty((0, length), np.int64)
    for _ in range(20):  # draw, keep the first copy of each input sequence, top up
        more_x, more_y = draw(2 * needed)
        x, y = np.concatenate([x, more_x]), np.concatenate([y, more_y])
        _, first = np.unique(x, axis=0, return_index=True)
        x, y = x[np.sort(first)], y[np.sort(first)]
        if len(x) >= needed:
            break
    else:
        raise ValueError(f"{problem!r} gave {len(x)} distinct sequences; the splits need {needed}")
    splits, start = {}, 0
    for split, size in SEQUENCE_SPLITS.items():
        splits[split] = {"x": x[start : start + size], "y": y[start : start + size]}
        start += size
    return to_device(splits)


def _sequence_task(
    name: str,
    module: nn.Module,
    *,
    problem: str,
    length: int,
    vocab: int,
    seed: int,
    steps: int,
    batch_size: int,
    seeds: int,
    param_scale: float,
) -> Task:
    """A per-token classification task (mean cross-entropy over positions)."""
    _check_sequence_options(problem, length, vocab)
    task = classification_task(
        name,
        module=module,
        input_shape=(length,),
        num_classes=vocab,
        data=functools.partial(load_sequences, problem, length, vocab, seed),
        steps=steps,
        batch_size=batch_size,
        seeds=seeds,
    )
    return reparametrize(task, param_scale)


def seq_transformer(
    *,
    steps: int = 400,
    batch_size: int = 16,
    seeds: int = 2,
    width: int = 32,
    depth: int = 1,
    heads: int = 2,
    activation: str = "gelu",
    causal: bool | None = None,
    problem: str = "markov",
    length: int = 16,
    vocab: int = 16,
    param_scale: float = 1.0,
    seed: int = 0,
) -> Task:
    """A pre-LayerNorm transformer on token sequences (:func:`load_sequences`).

    By default a small causal language model of an order-2 Markov chain.

    Args:
      steps: training steps.
      batch_size: sequences per minibatch.
      seeds: runs per candidate.
      width: the model width (``d_model``); the MLP is twice as wide.
      depth: transformer blocks.
      heads: attention heads (must divide ``width``).
      activation: the MLP activation (``models.ACTIVATIONS``).
      causal: causal attention; ``None``: causal for the problems whose
        targets look back only (``"markov"``, ``"running_sum"``), full for
        ``"reverse"`` and ``"sort"``. ``"markov"`` must be causal (its targets
        are the next inputs).
      problem: ``"markov"``, ``"running_sum"``, ``"reverse"`` or ``"sort"``.
      length: sequence length.
      vocab: tokens (and classes) per position.
      param_scale: see :func:`~symopt.tasks.base.reparametrize`.
      seed: the data seed.

    Returns:
      The task: ``num_classes = vocab``, per-token loss and accuracy.
    """
    models.activation(activation)  # unknown names fail here, not in a trace
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    if causal is None:
        causal = problem in CAUSAL_PROBLEMS
    if problem == "markov" and not causal:
        raise ValueError("problem 'markov' needs causal attention: its targets are the next inputs")
    module = models.Transformer(
        vocab=vocab,
        length=length,
        width=width,
        depth=depth,
        heads=heads,
        num_classes=vocab,
        causal=causal,
        activation=activation,
    )
    return _sequence_task("seq_transformer", module, problem=problem, length=length, vocab=vocab,
                          seed=seed, steps=steps, batch_size=batch_size, seeds=seeds,
                          param_scale=param_scale)


def seq_rnn(
    *,
    steps: int = 400,
    batch_size: int = 16,
    seeds: int = 2,
    hidden: int = 32,
    problem: str = "markov",
    length: int = 16,
    vocab: int = 8,
    param_scale: float = 1.0,
    seed: int = 0,
) -> Task:
    """A GRU on token sequences (:func:`load_sequences`); by default a language
    model of an order-2 Markov chain over 8 tokens, whose best loss is the
    chain's entropy, so no optimizer can reach zero (the running parity,
    ``problem="running_sum", vocab=2``, is solved exactly by most).

    Args:
      steps: training steps.
      batch_size: sequences per minibatch.
      seeds: runs per candidate.
      hidden: the GRU state size.
      problem: ``"running_sum"`` or ``"markov"`` (the causal problems: a
        recurrent net reads left to right); ``"reverse"`` and ``"sort"``
        need the positions to come.
      length: sequence length (the number of recurrent steps).
      vocab: tokens (and classes) per position; the running sum is mod ``vocab``.
      param_scale: see :func:`~symopt.tasks.base.reparametrize`.
      seed: the data seed.

    Returns:
      The task: ``num_classes = vocab``, per-token loss and accuracy.
    """
    module = models.GRU(vocab=vocab, hidden=hidden, num_classes=vocab)
    return _sequence_task("seq_rnn", module, problem=problem, length=length, vocab=vocab,
                          seed=seed, steps=steps, batch_size=batch_size, seeds=seeds,
                          param_scale=param_scale)
