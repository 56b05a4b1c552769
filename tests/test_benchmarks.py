"""The benchmark scripts run and print their figures (all slow: each compiles
several training programs; ``pytest -m slow``)."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symopt.tasks import base, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_engine_benchmark_prints_every_figure():
    command = [sys.executable, "experiments/benchmark.py", "--population=3", "--per_candidate=1",
               "--cold_repeats=1", "--repeats=2", "--sizes=1", "--sizes=2", "--strategy=vmap"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["strategy"] == "vmap"
    for key in ("overhead_mlp", "overhead_cnn", "speedup_vs_per_candidate_jit"):
        assert result[key] > 0
    assert set(result["candidate_steps_per_s"]) == {"1", "2"}
    assert "[benchmark] per-candidate jit loop" in out.stderr


def _paper_scale(*flags: str) -> tuple[dict, str]:
    command = [sys.executable, "experiments/benchmark.py", "--scale=paper", "--quick",
               "--paper_steps=2", "--repeats=1", *flags]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout), out.stderr


def _check_paper_point(point: dict) -> None:
    """Every figure of one model at one P is there and a finite number, and
    each goal's verdict and the sign of its margin say whether it is met."""
    for figure, goal in (("overhead", 1.1), ("memory_ratio", 1.5)):
        verdict = point[figure]
        assert verdict["goal"] == goal and math.isfinite(verdict["value"])
        assert verdict["met"] is (verdict["value"] <= goal) is (verdict["margin"] >= 0)
    for side in ("population", "adam"):
        assert math.isfinite(point["candidate_steps_per_s"][side])
        assert math.isfinite(point["compile_s"][side])
        assert set(point["memory_bytes"][side]) == {"argument", "output", "temp", "total"}


# slow: a CNN at batch 128 in two programs, with the other benchmark scripts.
@pytest.mark.slow
def test_paper_scale_prints_the_figures_and_the_goals():
    result, stderr = _paper_scale("--paper_populations=2", "--paper_models=small_cnn",
                                  "--strategy=vmap")
    assert result["scale"] == "paper" and result["strategy"] == "vmap"
    assert result["goals"] == {"overhead": 1.1, "memory_ratio": 1.5, "on": "one NVIDIA H100"}
    assert result["batch_size"] == 128 and result["steps"] == 2
    assert result["data"]["image_shape"] == [32, 32, 3] and result["data"]["classes"] == 10
    assert result["data"]["val"] == result["data"]["test"] == 30  # 15 per step
    assert "memory_analysis" in result["memory_measure"]
    assert set(result["results"]) == {"small_cnn"} and set(result["results"]["small_cnn"]) == {"2"}
    _check_paper_point(result["results"]["small_cnn"]["2"])
    assert "[benchmark] paper scale: small_cnn, P=2" in stderr


@pytest.mark.slow
def test_paper_scale_prints_both_models_at_each_population():
    result, _ = _paper_scale("--paper_populations=2", "--paper_populations=4")
    assert set(result["results"]) == {"small_cnn", "bn_cnn"}
    for points in result["results"].values():
        assert set(points) == {"2", "4"}
        for point in points.values():
            _check_paper_point(point)
        for side in ("population", "adam"):  # P candidates' weights and states: more for more
            two, four = (points[p]["memory_bytes"][side]["argument"] for p in ("2", "4"))
            assert four > two, (side, two, four)


# slow: it compiles the CNN four ways; by default a patch convolution equals flax's
# (tests/test_tasks.py::test_patch_conv_equals_flax_conv), and the paper scale that
# uses this model is itself under slow.
@pytest.mark.slow
def test_the_batchnorm_cnn_with_patch_convolutions_computes_what_it_does_with_conv():
    """The paper scale's CPU stand-in (``patch_conv``) computes what
    ``models.BatchNormCNN`` does, with the same variables."""
    reference = models.BatchNormCNN(channels=(8, 16), hidden=32, num_classes=10)
    patched = models.BatchNormCNN(channels=(8, 16), hidden=32, num_classes=10, patch_conv=True)
    variables = base.init_variables(reference, jax.random.key(0), (32, 32, 3))
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    np.testing.assert_allclose(patched.apply(variables, x), reference.apply(variables, x),
                               rtol=1e-4, atol=1e-4)
    out, state = patched.apply(variables, x, train=True, mutable=["batch_stats"])
    want, want_state = reference.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    for name, stats in want_state["batch_stats"].items():
        for key in ("mean", "var"):
            np.testing.assert_allclose(state["batch_stats"][name][key], stats[key],
                                       rtol=1e-4, atol=1e-5)
    assert jnp.all(jnp.isfinite(out))


# Both under `pytest -m slow` with the other benchmark scripts (each starts a Python
# that compiles the engine at two sizes): the engine they time is checked by default in
# tests/test_population.py.
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_step_benchmark_prints_each_size_and_the_fit(strategy):
    # Best of 5 calls of 20 steps: one call of 2 steps could be outrun by a
    # stall of the harness's call on a busy machine (the difference < 0).
    command = [sys.executable, "experiments/benchmark_step.py", "--population=2", "--steps=20",
               "--repeats=5", "--sizes=8", "--sizes=24", f"--strategy={strategy}"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["strategy"] == strategy
    assert set(result["sizes"]) == {"8", "24"}
    for figures in result["sizes"].values():
        assert figures["us_per_candidate_step"] > 0 and figures["compile_s"] > 0
        assert figures["harness_us_per_candidate_step"] > 0
    assert "fixed_us" in result and "ns_per_weight" in result


@pytest.mark.slow
def test_search_quality_benchmark_prints_each_seeds_ratios_and_the_goal(tmp_path):
    overrides = ["--config.search.generations=2", "--config.search.population_size=6",
                 "--config.tasks.steps=20", "--config.tasks.seeds=1",
                 "--config.elimination.steps=20", "--config.elimination.seeds=1",
                 "--config.elimination.top_k=2", "--config.test.steps=20",
                 "--config.test.seeds=1", "--config.test.top_k=1",
                 "--config.tasks.test=logistic,digits_cnn"]
    command = [sys.executable, "experiments/benchmark_search.py", "--part=quality",
               "--search_seeds=2", "--config=experiments/generalize.py", *overrides,
               f"--workdir={tmp_path}", "--cpu_devices=1"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)["quality"]
    assert [s["seed"] for s in result["per_search_seed"]] == [0, 1]
    comparisons = ("adam", "adamw_cosine", "lion", "terms_ga", "muon", "schedule_free_adamw")
    for seed in result["per_search_seed"]:
        for name in ("winner", *comparisons):  # each against every comparison
            figures = seed["winner"] if name == "winner" else seed["references"][name]
            for comparison in comparisons:
                assert figures[f"vs_{comparison}_as_found"] > 0
                assert figures[f"vs_{comparison}_lr_tuned"] > 0
        assert set(seed["references"]) == set(comparisons)
        assert seed["references"]["adam"]["vs_adam_lr_tuned"] == 1.0
        missed = seed["winner"]["goals_missed"]
        assert seed["winner"]["goal_met"] is (not missed)
        assert all(value <= 0 for key, value in missed.items() if key.startswith("vs_"))
    assert result["test_tasks"] == ["logistic", "digits_cnn"]
    assert os.path.exists(tmp_path / "seed1" / "summary.md")


_STUB_PYTHON = """#!/usr/bin/env bash
# Stands in for python: prints the backend for -c, else its arguments as JSON.
if [[ $1 == -c ]]; then echo "$FAKE_BACKEND"; exit 0; fi
printf '%s\\n' "$@" >>"$CALLS"
[[ " $* " == *" --strategy=fused "* && " $* " == *"--part=speed"* ]] && exit 3
echo '{"argv": "'"$*"'"}'
"""


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_benchmark_all_runs_each_step_into_its_own_files(tmp_path, backend):
    """``experiments/benchmark_all.sh``: one JSON and one log per step, the
    fused kernel's tests first on an accelerator, vmap and fused side by side
    there, loop alone on CPU (paper scale at a short budget unless
    ``PAPER_FLAGS`` says); a failing step is recorded and the rest still run."""
    stub = tmp_path / "python"
    stub.write_text(_STUB_PYTHON)
    stub.chmod(0o755)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=str(stub), FAKE_BACKEND=backend, CALLS=str(tmp_path / "calls"))
    env.pop("PAPER_FLAGS", None)
    if backend == "gpu":
        env["PAPER_FLAGS"] = "--paper_steps=3 --paper_populations=4"
    subprocess.run(["bash", "experiments/benchmark_all.sh", str(out)], cwd=ROOT, env=env,
                   check=True, capture_output=True, text=True)
    strategies = ["loop"] if backend == "cpu" else ["vmap", "fused"]
    steps = [*(["fused_tests"] if backend != "cpu" else []),
             *(f"{part}_{s}" for part in ("engine", "paper", "search", "step") for s in strategies)]
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0] == f"[benchmark_all] backend: {backend}"
    assert [line.split()[0] for line in summary[1:]] == steps
    for line in summary[1:]:
        failed = line.startswith("search_fused")
        assert (" exit=3 " in line) == failed, line
        if not failed:
            assert json.loads((out / f"{line.split()[0]}.json").read_text())["argv"]
    paper = json.loads((out / f"paper_{strategies[0]}.json").read_text())["argv"]
    flags = "--paper_steps=5 --paper_populations=16" if backend == "cpu" else (
        "--paper_steps=3 --paper_populations=4")  # CPU's default budget, or PAPER_FLAGS
    assert paper.endswith(f"--scale=paper --strategy={strategies[0]} {flags}")
    if backend != "cpu":
        assert "tests/test_fused.py" in (out / "fused_tests.json").read_text()
