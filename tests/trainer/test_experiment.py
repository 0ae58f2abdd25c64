"""Experiment runner: variants x seeds of a base config, trained in subprocesses, summarised against the logs."""
import csv
import json
import math
import os
from pathlib import Path

import pytest
import yaml

from glassbox.config import ConfigError
from glassbox_trainer.experiment import deep_merge, execute, interleave, plan
from glassbox_trainer.experiment_summary import markdown, steps_to_threshold, summarise, welch_p

HERE = Path(__file__).resolve().parent

BASE = {"task": "tiny_task:TinyTask", "tiny": {"train_items": 32, "val_items": 8}, "steps": 8, "batch_size": 8,
        "ckpt_every": 4, "eval_every": 2, "seed": 0, "device": "cpu",
        "optim": {"name": "adam", "lr": 0.01}, "schedule": {"name": "constant"},
        "entropy_log": {"enabled": False}}


def write_experiment(tmp_path: Path, runs: dict, tables: dict | None = None, seeds=(0, 1)) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    section = {"base": "base.yaml", "threshold": 0.5, "seeds": list(seeds), "runs": runs}
    if tables:
        section["tables"] = tables
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"tiny": section}, sort_keys=False))
    return path


def test_deep_merge_merges_mappings_and_replaces_everything_else():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    merged = deep_merge(base, {"a": {"y": [3], "z": 4}, "c": 5})
    assert merged == {"a": {"x": 1, "y": [3], "z": 4}, "b": 2, "c": 5}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}                       # the base is not modified


def test_plan_expands_seeds_substitutes_paths_and_orders_prerequisites_first(tmp_path):
    path = write_experiment(tmp_path, {
        "baseline": {},
        "l1": {"eloss": {"weight": 0.5}},
        "teacher": {"_seeds": [7], "model_size": "teacher"},
        "kd": {"_after": ["teacher"], "distill": {"teacher": "{section_dir}/teacher_s7/model.pt", "kd_weight": 1}},
    })
    runs = plan(path, "tiny", tmp_path / "out")
    assert [r.name for r in runs] == ["tiny/baseline_s0", "tiny/baseline_s1", "tiny/l1_s0", "tiny/l1_s1",
                                      "tiny/teacher_s7", "tiny/kd_s0", "tiny/kd_s1"]
    by_name = {r.name: r for r in runs}
    assert by_name["tiny/l1_s1"].config["seed"] == 1
    assert by_name["tiny/l1_s1"].config["eloss"] == {"weight": 0.5}
    assert by_name["tiny/l1_s1"].config["optim"] == BASE["optim"]
    assert by_name["tiny/kd_s0"].config["distill"]["teacher"] == str(tmp_path / "out" / "tiny" / "teacher_s7" /
                                                                      "model.pt")
    assert "_after" not in by_name["tiny/kd_s0"].config and by_name["tiny/kd_s0"].after == ("teacher",)
    order = [r.name for r in interleave(runs)]
    assert order[0] == "tiny/teacher_s7"
    assert order[1:] == ["tiny/baseline_s0", "tiny/l1_s0", "tiny/kd_s0", "tiny/baseline_s1", "tiny/l1_s1",
                         "tiny/kd_s1"]


def test_experiment_file_errors_name_the_problem(tmp_path):
    path = write_experiment(tmp_path, {"baseline": {}}, tables={"main": ["baseline", "missing"]})
    with pytest.raises(ConfigError, match="unknown runs.*missing"):
        plan(path, "tiny", tmp_path)
    path = write_experiment(tmp_path, {"kd": {"_after": ["teacher"]}})
    with pytest.raises(ConfigError, match="unknown run 'teacher'"):
        plan(path, "tiny", tmp_path)


def test_steps_to_threshold_and_welch_test_against_hand_values():
    curve = [(2, 0.1), (4, 0.49), (6, 0.5), (8, 0.3)]
    assert steps_to_threshold(curve, 0.5) == 6
    assert steps_to_threshold(curve, 0.6) is None
    # means 2 and 5, variances 1 and 1, n = 3: t = -3 / sqrt(2/3) = -3.674, Welch df = 4, two-sided p = 0.0213
    assert welch_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.02131, abs=2e-4)
    assert welch_p([1.0], [2.0, 3.0]) is None


def test_experiment_trains_resumes_reports_failures_and_summarises(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    path = write_experiment(tmp_path, {
        "baseline": {},
        "eloss_zero": {"eloss": {"weight": 0.0, "direction_weight": 0.0}},
        "eloss_l1": {"eloss": {"weight": 1.0}},
        "broken": {"_seeds": [0], "optim": {"lr": float("nan")}},
        "after_broken": {"_seeds": [0], "_after": ["broken"]},
    }, tables={"Eloss": ["baseline", "eloss_zero", "eloss_l1"]})
    out = tmp_path / "runs"
    runs = interleave(plan(path, "tiny", out))
    status = execute(runs, jobs=2, poll_s=0.2)
    assert status["tiny/broken_s0"] == "failed: exit 1: ValueError: Invalid learning rate: nan"   # the reason
    assert status["tiny/after_broken_s0"].startswith("skipped")
    assert all(status[f"tiny/{v}_s{s}"] == "done" for v in ("baseline", "eloss_zero", "eloss_l1") for s in (0, 1))
    # done runs are not trained again
    mtime = (out / "tiny" / "baseline_s0" / "model.pt").stat().st_mtime_ns
    again = execute([r for r in runs if r.variant == "baseline"], jobs=1, poll_s=0.2)
    assert set(again.values()) == {"done"}
    assert (out / "tiny" / "baseline_s0" / "model.pt").stat().st_mtime_ns == mtime

    summary = summarise(path, "tiny", out)
    base, zero, l1 = (summary["variants"][v] for v in ("baseline", "eloss_zero", "eloss_l1"))
    with open(out / "tiny" / "baseline_s1" / "eval.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert base["runs"]["baseline_s1"]["final"] == pytest.approx(float(rows[-1]["pixel_acc"]))
    assert base["runs"]["baseline_s1"]["best"] == pytest.approx(max(float(r["pixel_acc"]) for r in rows))
    # a zero Eloss weight trains exactly like the baseline (same seed): same curves, same entropy statistic
    for s in (0, 1):
        assert zero["runs"][f"eloss_zero_s{s}"]["curve"] == base["runs"][f"baseline_s{s}"]["curve"]
        assert zero["runs"][f"eloss_zero_s{s}"]["dh_variance"] == base["runs"][f"baseline_s{s}"]["dh_variance"]
    assert l1["runs"]["eloss_l1_s0"]["curve"] != base["runs"]["baseline_s0"]["curve"]
    finals = [base["runs"][f"baseline_s{s}"]["final"] for s in (0, 1)]
    assert base["final"]["mean"] == pytest.approx(sum(finals) / 2)
    assert base["final"]["std"] == pytest.approx(abs(finals[0] - finals[1]) / math.sqrt(2))
    assert summary["variants"]["broken"]["failed"] == 1
    assert summary["variants"]["broken"]["runs"]["broken_s0"]["status"] == status["tiny/broken_s0"]
    assert summary["variants"]["after_broken"]["unfinished"] == 1 and summary["variants"]["after_broken"]["failed"] == 0
    table = markdown(summary)
    assert "| eloss_l1 | 2 |" in table and "p vs baseline" in table
    json.dumps(summary)                                                        # the summary is plain JSON
