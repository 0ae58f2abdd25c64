"""Resume after SIGKILL is bit-exact for every trainer task (the tests' tiny task, lidar, refiner,
segmentation, fusion): a run killed during a step, after a checkpoint and after log rows the checkpoint does
not cover, resumes to the same logs, evaluations, entropy curves and weights as an uninterrupted run."""
import csv
import signal
import subprocess

import pytest
import torch
import yaml

from glassbox.models import load_card, verify_model_file
from glassbox_trainer.cli import export_run
from glassbox_trainer.config import train_config_from_dict
from glassbox_trainer.train import train
from test_train import cli, env

STEPS, CKPT_EVERY, KILL_AT_STEP = 8, 4, 7      # checkpoint at 4; evaluation and entropy rows at 5; killed in 7


def camera_data(cache) -> dict:
    return {"width": 64, "height": 64, "lightings": ["day", "night"], "frames_per_scene": 2, "cache_dir": str(cache)}


def task_config(name: str, cache) -> dict:
    """A few steps of each task on a handful of tiny inputs (seconds on one CPU thread)."""
    eloss = {"weight": 0.01, "per_dim": True}
    tasks = {
        "tiny": ("tiny_task:TinyTask", {"train_items": 16, "val_items": 4, "augment": True, "dropout": 0.1}, eloss),
        "lidar": ("lidar", {"train_frames": 4, "val_frames": 1, "crop_width": 64, "cache_dir": str(cache / "lidar")},
                  eloss),
        "segmentation": ("segmentation", {"mode": "multiclass", "loss": "ce", "input_size": [64, 64],
                                          "train_frames": 4, "val_frames": 2, "photometric": 0.5, "data": camera_data(cache)}, eloss),
        "fusion": ("fusion", {"input_size": [64, 64], "train_frames": 4, "val_frames": 2, "dropout": 0.3,
                              "photometric": 0.5, "model": {"stride": 4},
                              "data": camera_data(cache)}, {}),
        "refiner": ("refiner", {"crop": 32, "train_items": 8, "reference_frames": 1, "data": camera_data(cache)},
                    {}),
    }
    task, section, eloss_cfg = tasks[name]
    # the refiner evaluates on three full-size photographs: only at the end, to keep the case short
    return {"task": task, "task_cfg": section, "steps": STEPS, "batch_size": 2, "eval_batch_size": 2,
            "ckpt_every": CKPT_EVERY, "eval_every": 0 if name == "refiner" else 5, "log_every": 2, "seed": 5,
            "device": "cpu", "optim": {"name": "adamw", "lr": 3e-3, "grad_clip": 5.0},
            "schedule": {"name": "cosine", "warmup_steps": 2},
            "eloss": eloss_cfg, "entropy_log": {"every": 5, "max_samples": 32, "max_dim": 64}}


def csv_rows(path) -> list[dict[str, str]]:
    """Every row of a log as written (floats as their repr, so equal strings are equal values), no timings."""
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "step_s"} for row in csv.DictReader(fh)]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data_cache")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "lidar", "refiner", "segmentation", "fusion"])
def test_sigkill_during_a_step_then_resume_is_bit_exact(name, cache, tmp_path):
    raw = task_config(name, cache)
    ref, run = tmp_path / "ref", tmp_path / "killed"
    train(train_config_from_dict(raw), ref)                              # uninterrupted reference
    killing = {**raw, "task": "killing_task:KillingTask",
               "task_cfg": {"task": raw["task"], "cfg": raw["task_cfg"], "kill_at_step": KILL_AT_STEP}}
    (tmp_path / "killing.yaml").write_text(yaml.safe_dump(killing))
    done = subprocess.run(cli("--config", str(tmp_path / "killing.yaml"), "--out", str(run)), env=env(),
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == CKPT_EVERY
    left = [int(r["step"]) for r in csv_rows(run / "entropy.csv")]
    assert max(left) == 5                                  # rows after the checkpoint: the resume must drop them
    result = train(train_config_from_dict(raw), run, resume=True)        # the plain task, from last.pt
    for log in ("train_log.csv", "eval.csv", "entropy.csv"):
        got, want = csv_rows(run / log), csv_rows(ref / log)
        assert len(got) == len(want) > 0, log
        diff = [(a, b) for a, b in zip(got, want) if a != b]
        assert not diff, f"{log}: first differing rows {diff[:1]}"     # exact, every value of every row
    assert [int(r["step"]) for r in csv_rows(ref / "train_log.csv")] == list(range(1, STEPS + 1))
    for weights in ("model.pt", "best_model.pt"):
        assert same_weights(torch.load(run / weights, weights_only=True), torch.load(ref / weights, weights_only=True))
    a, b = torch.load(run / "last.pt", weights_only=True), torch.load(ref / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == STEPS and same_weights(a["step_module"], b["step_module"])
    if name != "tiny":
        check_card(name, export_run(train_config_from_dict(raw), run, result, tmp_path / "models", "cmd"))


#: card fields the nodes, the replay and the monitor read, per task (beyond what every card has)
CARD_EXTRA = {"lidar": {"sensor", "projection", "model_config", "decode"}, "refiner": {"model_config", "report"},
              "segmentation": {"model_config", "input_size", "mode", "report"},
              "fusion": {"model_config", "input_size", "score_threshold", "homography_thermal_to_rgb",
                         "camera_size"}}
CLASSES = {"lidar": 3, "refiner": 0, "segmentation": 9, "fusion": 3}


def check_card(name: str, card_path) -> None:
    """The trainer's export wrote the card of this task with every field its deployment needs."""
    card = load_card(card_path)
    verify_model_file(card_path)
    assert CARD_EXTRA[name] <= set(card.extra), sorted(card.extra)
    assert len(card.classes) == CLASSES[name]
    assert card.entropy_reference.layer_names == card.features and card.entropy_reference.num_inputs >= 1
    assert card.weights_file and card.training["config"]["task"] == name and card.parity_max_abs_diff < 1e-3
    if name == "refiner":
        assert "refiner" in card.extra["report"]["photos"]["contrast+"]
    if name == "fusion":
        assert {"thermal_absent", "rgb_absent"} <= set(card.extra["report"])
    if name == "segmentation":                   # the tiny run's frames cycle through day and night
        assert set(card.extra["report"]["by_lighting"]) == {"day", "night"}
    # --export wrote the deployed graph: the entropy statistics come out of it, not the feature maps
    import onnx
    outputs = {o.name for o in onnx.load(verify_model_file(card_path)).graph.output}
    assert card.extra.get("entropy_in_graph") is True
    assert {"entropy_mean_log_r", "entropy_sizes"} <= outputs and not outputs & set(card.features)


def test_prepare_data_renders_every_train_and_val_frame_into_the_cache(tmp_path):
    from glassbox_trainer.tasks.segmentation import CameraDataConfig, frame_path, render_frame

    raw = task_config("fusion", tmp_path)
    config = tmp_path / "fusion.yaml"
    config.write_text(yaml.safe_dump({"task": raw["task"], "fusion": raw["task_cfg"],
                                      **{k: v for k, v in raw.items() if k not in ("task", "task_cfg")}}))
    done = subprocess.run(cli("--config", str(config), "--prepare-data", "2"), env=env(), check=True,
                          capture_output=True, text=True)
    assert '"prepared_items": 6' in done.stdout and "train: 4/4 items" in done.stdout
    data = CameraDataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in camera_data(tmp_path).items()})
    files = [frame_path(data, split, i) for split, n in (("train", 4), ("val", 2)) for i in range(n)]
    assert all(f.is_file() for f in files)
    # what was cached is the frame itself: removing it and rendering again gives the same pixels
    cached = render_frame(data, "val", 1)["rgb"]
    files[-1].unlink()
    assert (render_frame(data, "val", 1)["rgb"] == cached).all()
