"""The engine benchmark script runs and prints its figures (slow: it compiles
several training programs; ``pytest -m slow``)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_engine_benchmark_prints_every_figure():
    command = [sys.executable, "experiments/benchmark.py", "--population=3", "--per_candidate=1",
               "--cold_repeats=1", "--repeats=1", "--sizes=1", "--sizes=2"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    for key in ("overhead_mlp", "overhead_cnn", "speedup_vs_per_candidate_jit"):
        assert result[key] > 0
    assert set(result["candidate_steps_per_s"]) == {"1", "2"}
    assert "[benchmark] per-candidate jit loop" in out.stderr
