"""The engine benchmark scripts run and print their figures (``benchmark.py``
is slow: it compiles several training programs; ``pytest -m slow``)."""

import json
import os
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_step_benchmark_prints_each_size_and_the_fit(strategy):
    command = [sys.executable, "experiments/benchmark_step.py", "--population=2", "--steps=2",
               "--repeats=1", "--sizes=8", "--sizes=24", f"--strategy={strategy}"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["strategy"] == strategy
    assert set(result["sizes"]) == {"8", "24"}
    for figures in result["sizes"].values():
        assert figures["us_per_candidate_step"] > 0 and figures["compile_s"] > 0
        assert figures["harness_us_per_candidate_step"] > 0
    assert "fixed_us" in result and "ns_per_weight" in result
