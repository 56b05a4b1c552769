"""The benchmark scripts run and print their figures (``benchmark.py`` and the
search-quality benchmark are slow: they compile several training programs;
``pytest -m slow``)."""

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
    for seed in result["per_search_seed"]:
        for key in ("vs_adam_as_found", "vs_adam_lr_tuned", "vs_adamw_cosine_as_found",
                    "vs_adamw_cosine_lr_tuned", "vs_terms_ga_lr_tuned"):
            assert seed["winner"][key] > 0
        assert set(seed["references"]) == {"terms_ga", "lion", "adam"}
        assert seed["references"]["adam"]["vs_adam_lr_tuned"] == 1.0
    assert result["test_tasks"] == ["logistic", "digits_cnn"]
    assert os.path.exists(tmp_path / "seed1" / "summary.md")
