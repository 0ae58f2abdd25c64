"""The training engine on a real tiny task: schedules, config, SIGKILL + resume, torchrun (gloo) vs one process."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from glassbox.config import ConfigError
from glassbox_trainer.config import ScheduleConfig, load_train_config, train_config_from_dict
from glassbox_trainer.task import TaskError, build_task
from glassbox_trainer.logs import truncate_log
from glassbox_trainer.schedule import lr_factor
from glassbox_trainer.train import TrainError, get_lr, read_log, train

HERE = Path(__file__).resolve().parent
LOSS_COLUMNS = ("lr", "task", "eloss_var", "total", "task/ce")


def tiny_config(**over) -> dict:
    cfg = {"task": "tiny_task:TinyTask", "tiny": {"train_items": 64, "val_items": 8},
           "steps": 12, "batch_size": 8, "ckpt_every": 2, "eval_every": 6, "seed": 3,
           "optim": {"name": "adam", "lr": 0.01}, "schedule": {"name": "cosine", "warmup_steps": 2},
           "eloss": {"weight": 0.01}, "entropy_log": {"every": 4}}
    cfg.update(over)
    return cfg


def write_config(path: Path, **over) -> Path:
    path.write_text(yaml.safe_dump(tiny_config(**over)))
    return path


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")])
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return e


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "glassbox_trainer.cli", *args]


def loss_rows(run: Path) -> list[tuple]:
    return [tuple(r[c] for c in ("step", *LOSS_COLUMNS)) for r in read_log(run / "train_log.csv")]


# ---------------------------------------------------------------------------------------------- schedules
def test_lr_schedule_is_pure_warmup_then_cosine_to_floor():
    cfg = ScheduleConfig(name="cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_factor(s, 100, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 100, cfg) == pytest.approx(1.0)
    assert lr_factor(52, 100, cfg) == pytest.approx(0.55)           # half way: (1 + 0.1) / 2
    assert lr_factor(100, 100, cfg) == pytest.approx(0.1)
    assert get_lr(30, 100, 0.5, cfg) == get_lr(30, 100, 0.5, cfg) == 0.5 * lr_factor(30, 100, cfg)
    step_cfg = ScheduleConfig(name="step", milestones=(0.5, 80), gamma=0.1)
    assert [lr_factor(s, 100, step_cfg) for s in (0, 49, 50, 79, 80)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


# ------------------------------------------------------------------------------------------------- config
def test_config_splits_task_section_and_rejects_unknown_keys(tmp_path):
    cfg = load_train_config(write_config(tmp_path / "c.yaml"))
    assert cfg.task == "tiny_task:TinyTask" and cfg.task_cfg == {"train_items": 64, "val_items": 8}
    assert cfg.optim.name == "adam" and cfg.eloss.weight == 0.01
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        train_config_from_dict(tiny_config(optim={"lrr": 1.0}))
    with pytest.raises(ConfigError, match="batch_size"):
        train_config_from_dict(tiny_config(batch_size=0))
    mapped = train_config_from_dict({"task": {"name": "tiny_task:TinyTask", "width": 4}, "steps": 3})
    assert mapped.task_cfg == {"width": 4}


def test_unknown_task_is_a_clear_error():
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        build_task("nope", {})
    with pytest.raises(TaskError, match="does not implement"):
        build_task("glassbox_trainer.losses:WeightedSum", {})


# ------------------------------------------------------------------------------- training, in process
def test_training_learns_and_writes_logs(tmp_path):
    cfg = train_config_from_dict(tiny_config(steps=30, eval_every=15, ckpt_every=15, eloss={"weight": 0.0},
                                             entropy_log={"every": 10}))
    result = train(cfg, tmp_path / "run")
    rows = read_log(tmp_path / "run" / "train_log.csv")
    assert len(rows) == 30 and "eloss_var" not in rows[0]                 # weight 0: the term is not computed
    first = sum(r["task"] for r in rows[:5]) / 5
    last = sum(r["task"] for r in rows[-5:]) / 5
    assert last < 0.85 * first
    assert result["metrics"]["pixel_acc"] > 0.45                            # chance is about 1/3
    assert (tmp_path / "run" / "entropy_curves.png").stat().st_size > 0
    ent = read_log_rows(tmp_path / "run" / "entropy.csv")
    assert {r["layer"] for r in ent} == {"stem", "block1", "block2", "block3"}
    assert sorted({int(r["step"]) for r in ent}) == [0, 10, 20, 30]


def read_log_rows(path):
    import csv
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_truncate_log_drops_rows_after_step_and_partial_lines(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("step,a,b\n1,0.1,0.2\n2,0.3,0.4\n3,0.5,0.6\n4,0.7")
    truncate_log(p, 2)
    assert p.read_text().splitlines() == ["step,a,b", "1,0.1,0.2", "2,0.3,0.4"]


# ------------------------------------------------------------------------------- kill -9 and resume
def test_sigkill_then_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
    steps = 16
    # augmentation and dropout draw from the Python, numpy and torch RNGs: all three must be restored
    config = write_config(tmp_path / "tiny.yaml", steps=steps,
                          tiny={"train_items": 64, "val_items": 8, "augment": True, "dropout": 0.1})
    ref = tmp_path / "ref"
    train(load_train_config(config), ref)                                 # uninterrupted reference, one thread

    run = tmp_path / "killed"
    proc = subprocess.Popen(cli("--config", str(config), "--out", str(run)), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "last.pt"
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists():
            killed_at = torch.load(ckpt, weights_only=True)["step"]
            if killed_at >= 4:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert killed_at is not None and killed_at < steps
    subprocess.run(cli("--config", str(config), "--out", str(run), "--resume"), env=env(), check=True,
                   capture_output=True)

    got, want = loss_rows(run), loss_rows(ref)
    assert len(got) == len(want) == steps
    diff = [(a, b) for a, b in zip(got, want) if a != b]
    assert not diff, f"killed at checkpoint {killed_at}; first differing rows: {diff[:2]}"  # exact, every step
    assert read_log(run / "eval.csv") == read_log(ref / "eval.csv")
    a = torch.load(run / "model.pt", weights_only=True)
    b = torch.load(ref / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


# -------------------------------------------------------------------------------------- torchrun / gloo
def test_a_resumed_run_reports_the_wall_time_of_all_its_processes(tmp_path):
    config = load_train_config(write_config(tmp_path / "tiny.yaml", steps=4, eval_every=0, ckpt_every=2))
    first = train(config, tmp_path / "run")
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert 0 < ckpt["train_seconds"] <= first["train_seconds"]
    again = train(config, tmp_path / "run", resume=True)                   # finished: nothing left to train
    assert again["steps"] == 4 and again["train_seconds"] >= ckpt["train_seconds"]
    # a checkpoint of an older run, without the field: the step times of the training log are summed
    del ckpt["train_seconds"]
    torch.save(ckpt, tmp_path / "run" / "last.pt")
    logged = sum(float(r["step_s"]) for r in read_log(tmp_path / "run" / "train_log.csv"))
    assert logged > 0 and train(config, tmp_path / "run", resume=True)["train_seconds"] >= logged


def test_torchrun_two_processes_match_one_process_with_double_batch(tmp_path):
    # Eloss is a non-linear function of batch-mean entropies, so (like BatchNorm) it is computed per process
    # shard; the task loss and its gradients are exactly data-parallel.
    common = dict(steps=5, ckpt_every=5, eval_every=0, entropy_log={"enabled": False}, eloss={"weight": 0.0},
                  optim={"name": "sgd", "lr": 0.05}, schedule={"name": "constant"})
    one = write_config(tmp_path / "one.yaml", batch_size=8, **common)
    two = write_config(tmp_path / "two.yaml", batch_size=4, **common)
    train(load_train_config(one), tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "glassbox_trainer.cli", "--config", str(two), "--out", str(tmp_path / "two")]
    done = subprocess.run(torchrun, env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    r1, r2 = read_log(tmp_path / "one" / "train_log.csv"), read_log(tmp_path / "two" / "train_log.csv")
    assert len(r1) == len(r2) == 5
    assert r1[-1]["task"] < r1[0]["task"]
    for a, b in zip(r1, r2):
        assert b["task"] == pytest.approx(a["task"], rel=1e-5)
    w1 = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    assert torch.load(tmp_path / "two" / "last.pt", weights_only=True)["world_size"] == 2


# ------------------------------------------------------------------------------------------------ FMCS
def test_fmcs_report_marks_phases_and_when_each_module_settles(tmp_path):
    from glassbox.entropy import fmcs
    from glassbox_trainer.curves import fmcs_report

    m = np.arange(1, 101)
    loss = 2 * np.exp(-0.1 * m) + 0.05                                   # one value per 2-step block
    with open(tmp_path / "train_log.csv", "w") as fh:
        rows = (f"{2 * i + j + 1},{float(v)!r}\n" for i, v in enumerate(loss) for j in range(2))
        fh.write("step,task\n" + "".join(rows))
    with open(tmp_path / "entropy.csv", "w") as fh:
        fh.write("step,layer,entropy_nats,delta_nats\n")
        for s in range(0, 201, 10):
            fh.write(f"{s},early,{10.0 if s >= 20 else 5.0 + s / 4},0\n")     # flat from step 20
            fh.write(f"{s},late,{-3.0 - s / 10 if s < 150 else -18.0},0\n")    # flat from step 150
            fh.write(f"{s},never,{float(s % 20 == 0) * 5 + 1},0\n")            # keeps jumping
    rep = fmcs_report(tmp_path, block_steps=2, mu=1e-3)
    ref = fmcs(loss, mu=1e-3 * loss[0], window=3, on_no_convergence="argmin")    # EMA starts at loss[0]
    assert rep["marker_steps"] == [int(x) * 2 for x in ref.markers]
    assert rep["modules"]["never"] == {"settled_step": None, "phase": None}
    early, late = rep["modules"]["early"], rep["modules"]["late"]
    assert 20 <= early["settled_step"] <= 60 and 150 <= late["settled_step"] <= 200
    assert early["phase"] < late["phase"]


# --------------------------------------------------------------------------------- teacher -> student
def test_distillation_run_trains_student_with_kd_srm_mosakd_and_leaves_teacher_untouched(tmp_path):
    teacher_cfg = train_config_from_dict(tiny_config(steps=6, model_size="teacher", eloss={"weight": 0.0},
                                                     entropy_log={"enabled": False}, eval_every=0, ckpt_every=6))
    train(teacher_cfg, tmp_path / "teacher")
    teacher_file = tmp_path / "teacher" / "model.pt"
    before = torch.load(teacher_file, weights_only=True)
    cfg = train_config_from_dict(tiny_config(
        steps=4, model_size="student", eloss={"weight": 0.0}, entropy_log={"enabled": False}, eval_every=0,
        ckpt_every=4, distill={"teacher": str(teacher_file), "kd_weight": 0.5, "temperature": 2.0,
                               "srm_weight": 1.0, "srm_pairs": [["block3", "block3"]], "srm_mu": 2.0,
                               "srm_sparsity": 0.1, "srm_dictionary_steps": 5,
                               "mosakd_weight": 0.1, "mosakd_layers": ["block2"], "mosakd_k": 4,
                               "mosakd_max_samples": 128}))
    result = train(cfg, tmp_path / "student")
    assert result["formula"] == "total = 1*task + 0.5*kd + 1*srm + 0.1*mosakd"
    rows = read_log(tmp_path / "student" / "train_log.csv")
    for r in rows:
        assert r["kd"] > 0 and r["srm"] > 0 and r["mosakd"] >= 0
        assert r["total"] == pytest.approx(r["task"] + 0.5 * r["kd"] + r["srm"] + 0.1 * r["mosakd"], rel=1e-5)
    ckpt = torch.load(tmp_path / "student" / "last.pt", weights_only=True)
    teacher_after = {k[len("teacher."):]: v for k, v in ckpt["step_module"].items() if k.startswith("teacher.")}
    assert teacher_after.keys() == before.keys()
    assert all(torch.equal(teacher_after[k], before[k]) for k in before)
    assert ckpt["model"]["stem.weight"].shape[0] == 8                       # the student, not the teacher


def test_distillation_without_teacher_is_a_clear_error():
    cfg = train_config_from_dict(tiny_config(distill={"kd_weight": 1.0}))
    with pytest.raises(TrainError, match="teacher"):
        train(cfg, "/nonexistent/never-written")
