"""Novelty: a graph judged by its behaviour against the zoo (symopt.novelty)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symopt
from symopt import graph as graph_lib
from symopt import novelty, zoo
from symopt.graph import Graph, nodes
from symopt.spaces import nos

ONE_ON_THE_PROBE = {"adamw": "adam", "lamb": "adam", "autolr_sign": "signsgd",
                    "addsign": "powersign"}
"""Zoo optimizers whose behaviour on the probe is within novelty.TIE_MARGIN of a
simpler (or earlier) one, which the verdict names: AdamW's decay of 1e-4 and
LAMB's per-leaf trust ratio barely turn Adam's directions, autolr_sign is
signsgd at another learning rate, AddSign's 1 +- 1 and PowerSign's e^{+-1}
weigh the same coordinates."""


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_optimizer_is_its_own_nearest_with_similarity_one(name):
    graph = zoo.get(name)
    assert novelty.judge(graph, zoo_names=[name]).similarity == pytest.approx(1.0, abs=1e-9)
    judgement = novelty.judge(graph)
    assert judgement.nearest == ONE_ON_THE_PROBE.get(name, name)
    assert judgement.similarity >= 1.0 - novelty.TIE_MARGIN
    assert max(m.similarity for m in judgement.top) == pytest.approx(1.0, abs=1e-9)
    assert judgement.verdict == f"re-tuning of {judgement.nearest}"


def test_adam_at_other_betas_and_epsilon_is_a_re_tuning_of_adam():
    graph = zoo.adam(beta1=0.85, beta2=0.98, eps=1e-7)
    judgement = novelty.judge(graph)
    assert judgement.verdict == "re-tuning of adam"
    assert judgement.similarity >= novelty.THRESHOLD


def test_adam_at_betas_off_every_grid_is_matched_at_its_own_values():
    # The search's winner #134 of a discover.py run: Adam at beta1 0.5, beta2 0.9
    # with a cosine schedule, which the grid's nearest Adam matches below 0.95.
    graph = zoo.adam(beta1=0.5, beta2=0.9).replace(
        schedule=symopt.Schedule(kind="cosine", warmup_steps=10))
    judgement = novelty.judge(graph)
    assert judgement.verdict == "re-tuning of adam"
    assert judgement.top[0].hparams == {"beta1": 0.5, "beta2": 0.9, "eps": 1e-8}
    assert novelty.own_setting("adam", graph) == {"beta1": 0.5, "beta2": 0.9, "eps": 1e-8}


def test_orthogonalised_momentum_on_every_leaf_is_a_re_tuning_of_muon():
    # discover.py's seed-2 winner at commit 7f1e4f0 (runs/discover_v3): orth of an
    # EMA of g (beta1 0.5) on every leaf, with weight decay and a cosine schedule.
    # It is Muon without Nesterov at beta 0.5, run on biases and conv kernels too.
    graph = symopt.Graph(
        update=graph_lib.nodes(("keep_left", "orth", "m", "identity", "m")),
        hparams=symopt.Hyperparams(learning_rate=0.077, beta1=0.5, weight_decay=0.01,
                                   bias_correction=False),
        schedule=symopt.Schedule(kind="cosine", warmup_steps=100))
    judgement = novelty.judge(graph)
    assert judgement.verdict == "re-tuning of muon"
    assert judgement.top[0].hparams["every_leaf"] and not judgement.top[0].hparams["nesterov"]
    # Muon on the 2-D leaves only (NAdam elsewhere) is not as near.
    assert novelty.similarity(graph, zoo.muon(beta=0.5)) < novelty.THRESHOLD


def test_orthadam_is_not_muon_on_every_leaf():
    for nesterov in (True, False):
        for beta in (0.5, 0.9):
            muon = zoo.muon(every_leaf=True, nesterov=nesterov, beta=beta)
            assert novelty.similarity(zoo.orthadam(), muon) < 0.8


# discover.py's seed-1 winner (runs/discover_v2, commit 6229f72), pruned: on a
# matrix orth(k g + clip(s, +-0.001)), s the momentum; on the probe's gradients
# the clipped momentum barely counts, and it acts as Muon with little momentum.
SEED1_WINNER = (
    '{"format": "symopt.graph/1", "update": {"nodes": [{"op": "add", "left": "identit'
    'y", "a": "g", "right": "identity", "b": "s0"}, {"op": "if_matrix", "left": "iden'
    'tity", "a": "c0", "right": "identity", "b": "c1"}, {"op": "mul", "left": "identi'
    'ty", "a": "n0", "right": "identity", "b": "n1"}, {"op": "keep_left", "left": "cl'
    'ip_0.001", "a": "n2", "right": "identity", "b": "n2"}, {"op": "add", "left": "id'
    'entity", "a": "n3", "right": "identity", "b": "g"}, {"op": "keep_left", "left": '
    '"sqrt_abs", "a": "v", "right": "identity", "b": "v"}, {"op": "div", "left": "ide'
    'ntity", "a": "n4", "right": "identity", "b": "n5"}, {"op": "if_matrix", "left": '
    '"orth", "a": "n4", "right": "identity", "b": "n6"}], "root": "n7"}, "states": ["'
    'n2"], "decays": {"g": {"nodes": [{"op": "sub", "left": "identity", "a": "decay_c'
    'osine", "right": "tanh", "b": "decay_cosine"}, {"op": "pow", "left": "clip_0.001'
    '", "a": "n0", "right": "identity", "b": "n0"}], "root": "n1"}}, "schedule": {"ki'
    'nd": "linear", "warmup_steps": 0, "alpha": 0.1, "decay_rate": 0.1, "steps": 3, "'
    'cycles": 4, "expr": null, "values": []}, "momentum": "none", "hparams": {"learni'
    'ng_rate": 0.0663876555789051, "beta1": 0.9, "beta2": 0.999, "beta3": 0.999, "eps'
    '": 1e-08, "weight_decay": 0.0, "momentum": 0.9, "clip_value": 0.0, "clip_norm": '
    '0.0, "bias_correction": true}, "constants": [0.868597, 0.9]}'
)


def test_a_muon_that_keeps_little_momentum_is_a_re_tuning_of_muon():
    judgement = novelty.judge(symopt.from_json(SEED1_WINNER))
    assert judgement.verdict == "re-tuning of muon"
    assert judgement.top[0].hparams["beta"] <= 0.5
    low = zoo.muon(beta=0.3, beta1=0.5).with_hparams(learning_rate=0.07)
    assert novelty.judge(low).verdict == "re-tuning of muon"


def test_lion_is_not_a_re_tuning_of_adam():
    judgement = novelty.judge(zoo.lion(), zoo_names=["adam"])
    assert judgement.verdict == "new"
    assert judgement.similarity < novelty.THRESHOLD


@pytest.mark.parametrize("a, b", [("adam", "lion"), ("adam", "muon"), ("adam", "momentum"),
                                  ("lion", "muon"), ("sgd", "adam"), ("muon", "momentum")])
def test_distinct_zoo_optimizers_are_not_re_tunings_of_each_other(a, b):
    assert novelty.judge(zoo.get(a), zoo_names=[b]).verdict == "new"
    assert novelty.judge(zoo.get(b), zoo_names=[a]).verdict == "new"


def test_the_learning_rate_and_schedule_do_not_change_the_judgement():
    graph = zoo.adam(beta1=0.8)
    scaled = graph.with_hparams(learning_rate=123.0).replace(
        schedule=symopt.Schedule(kind="cosine", warmup_steps=5))
    a, b = novelty.judge(graph), novelty.judge(scaled)
    assert a.nearest == b.nearest
    assert [m.similarity for m in a.top] == pytest.approx([m.similarity for m in b.top],
                                                          abs=1e-9)


def test_a_random_graph_gets_a_verdict():
    rng = np.random.default_rng(5)
    graph = nos.sample_checked(rng, 1)[0]
    judgement = novelty.judge(graph)
    assert judgement.verdict in ("new", f"re-tuning of {judgement.nearest}")
    assert -1.0 <= judgement.similarity <= 1.0
    assert len(judgement.top) == 3
    assert judgement.equation == symopt.simplicity.simplified_equation(graph)


def test_a_new_optimizer_is_judged_new():
    # orth of the sign of the gradient on matrices, the gradient's cube elsewhere.
    graph = Graph(update=nodes(("if_matrix", "orth", "sign_g", "identity", "g3")))
    assert novelty.judge(graph).verdict == "new"


def test_the_summary_lines_name_the_verdict_the_nearest_and_both_equations():
    judgement = novelty.judge(zoo.adam(beta1=0.85))
    lines = novelty.summary_lines(judgement)
    text = "\n".join(lines)
    assert lines[0] == "## Novelty"
    assert "re-tuning of adam" in text
    assert "| adam |" in text
    assert judgement.equation.replace("|", "\\|") in text
    assert judgement.nearest_equation in text
    assert sum(line.startswith("| ") and "|---" not in line for line in lines) == 3 + 2 + 2


def test_the_probe_steps_are_what_to_optax_computes():
    # novelty runs the NumPy reference step; to_optax must give the same updates.
    probe = novelty.probe_inputs()
    shapes = novelty.PROBE_LEAVES

    def tree(flat):
        cut = int(np.prod(shapes[0]))
        return {"a": jnp.asarray(flat[:cut].reshape(shapes[0])), "b": jnp.asarray(flat[cut:])}

    with jax.enable_x64(True):
        for name in ("adam", "lion", "muon", "adafactor"):
            graph = zoo.get(name)
            tx = symopt.to_optax(graph, total_steps=novelty.PROBE_STEPS)
            update = jax.jit(tx.update)  # one compile: op by op, muon's steps take long
            state = tx.init(tree(probe.weights[0]))
            ours = novelty.updates(graph)
            for k in range(10):
                u, state = update(tree(probe.grads[k]), state, tree(probe.weights[k]))
                flat = np.concatenate([np.ravel(u["a"]), np.ravel(u["b"])])
                np.testing.assert_allclose(flat, ours[k], rtol=1e-6, atol=1e-12)



def test_the_zoo_runs_once_per_process_and_a_judgement_runs_only_its_graph(monkeypatch):
    novelty.judge(zoo.adam(beta1=0.7))  # the zoo's runs (and at its own betas), once
    runs = []
    real = novelty.updates
    monkeypatch.setattr(novelty, "updates", lambda graph: runs.append(graph) or real(graph))
    novelty.judge(zoo.adam(beta1=0.7, learning_rate=5.0))
    assert len(runs) == 1


def test_unknown_zoo_names_are_named():
    with pytest.raises(KeyError, match="nope"):
        novelty.judge(zoo.adam(), zoo_names=["nope"])


def test_dropout_on_a_zoo_optimizer_is_still_that_optimizer():
    adam = zoo.adam()
    dropped = adam.replace(update=graph_lib.Expr(
        (graph_lib.Node("keep_left", "drop_0.1", adam.update.root, "identity", "one"),), "n0"))
    judgement = novelty.judge(dropped)
    assert judgement.verdict == "re-tuning of adam" and judgement.similarity > 0.99
