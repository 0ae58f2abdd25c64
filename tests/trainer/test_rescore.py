"""``glassbox_trainer.reexport --rescore``: a card's weights evaluated again under a changed decoder and a larger
validation set, the graph and weights untouched; a config that builds another network is refused."""
import copy

import pytest
import torch
import yaml

from glassbox.lidar import DecodeConfig
from glassbox.models import load_card, verify_model_file
from glassbox_trainer.cli import export_run
from glassbox_trainer.config import train_config_from_dict
from glassbox_trainer.data import eval_loader
from glassbox_trainer.reexport import main as reexport_main
from glassbox_trainer.reexport import rescore
from glassbox_trainer.task import build_task
from glassbox_trainer.train import train


def lidar_config(cache) -> dict:
    return {"task": "lidar", "steps": 6, "batch_size": 2, "eval_batch_size": 2, "seed": 3, "device": "cpu",
            "log_every": 2, "ckpt_every": 6, "optim": {"name": "adamw", "lr": 3e-3},
            "task_cfg": {"train_frames": 3, "val_frames": 1, "crop_width": 64, "cache_dir": str(cache),
                         "eval_score_threshold": 0.0, "decode": {"box_vote_classes": []}},
            "entropy_log": {"every": 0, "max_samples": 32, "max_dim": 64}}


@pytest.mark.slow
def test_rescore_replaces_metrics_and_decoder_but_not_the_graph(tmp_path):
    raw = lidar_config(tmp_path / "cache")
    cfg = train_config_from_dict(raw)
    result = train(cfg, tmp_path / "run")
    card_path = export_run(cfg, tmp_path / "run", result, tmp_path / "models", "cmd")
    before = load_card(card_path)
    onnx_bytes = (card_path.parent / before.file).read_bytes()
    assert before.metrics["car/num_gt"] > 0 and before.extra["decode"]["box_vote_classes"] == []

    changed = copy.deepcopy(raw)
    changed["task_cfg"].update(val_frames=2, decode={"box_vote_classes": [0, 1, 2], "vote_gate_m": [2.0, 0.5, 0.5]})
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    reexport_main([str(card_path), "--rescore", str(tmp_path / "changed.yaml")])
    after = load_card(card_path)
    # what the changed config measures, evaluated here on its own
    ccfg = train_config_from_dict(changed)
    task = build_task(ccfg.task, ccfg.task_cfg)
    model = task.build_model()
    model.load_state_dict(torch.load(card_path.parent / before.weights_file, weights_only=True))
    with torch.no_grad():
        want = task.evaluate(model.eval(), eval_loader(task, task.datasets()[1], ccfg))
    assert after.metrics == pytest.approx(want)
    assert after.metrics["car/num_gt"] > before.metrics["car/num_gt"]            # two validation streets now
    assert after.extra["decode"]["box_vote_classes"] == [0, 1, 2]
    assert DecodeConfig(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in after.extra["decode"].items()}).vote_gate_m == (2.0, 0.5, 0.5)
    assert after.training["config"]["task_cfg"]["val_frames"] == 2 and "--rescore" in after.training["rescored"]["command"]
    assert after.training["command"] == before.training["command"] == "cmd"
    assert (card_path.parent / after.file).read_bytes() == onnx_bytes and after.sha256 == before.sha256
    assert after.entropy_reference == before.entropy_reference
    verify_model_file(card_path)

    other = copy.deepcopy(raw)
    other["task_cfg"]["model"] = {"stage_blocks": [1, 1, 1]}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises((ValueError, RuntimeError)):
        rescore(card_path, tmp_path / "other.yaml")
    assert load_card(card_path).metrics == after.metrics                        # a refused rescore writes nothing


@pytest.mark.slow
def test_rescore_fits_the_segmentation_decision_bias_that_the_pipeline_then_applies(tmp_path):
    from glassbox.pipelines import SegmentationPipeline
    from test_resume_tasks import camera_data

    raw = {"task": "segmentation", "steps": 4, "batch_size": 2, "eval_batch_size": 2, "seed": 3, "device": "cpu",
           "log_every": 2, "ckpt_every": 4, "optim": {"name": "adamw", "lr": 3e-3},
           "task_cfg": {"mode": "multiclass", "loss": "ce", "input_size": [64, 64], "train_frames": 4,
                        "val_frames": 16, "data": {**camera_data(tmp_path / "cache"), "frames_per_scene": 4}},
           "entropy_log": {"every": 0, "max_samples": 32, "max_dim": 64}}
    cfg = train_config_from_dict(raw)
    card_path = export_run(cfg, tmp_path / "run", train(cfg, tmp_path / "run"), tmp_path / "models", "cmd")
    assert "decision_bias" not in load_card(card_path).extra
    fitted = copy.deepcopy(raw)
    fitted["task_cfg"]["fit_decision_bias"] = True
    (tmp_path / "fitted.yaml").write_text(yaml.safe_dump(fitted))
    card = rescore(card_path, tmp_path / "fitted.yaml")
    bias = card.extra["decision_bias"]
    report = card.extra["report"]["decision_bias"]
    assert len(bias) == 9 and report["bias"] == bias
    # fitted on the even streets, so there at least as good as the plain argmax; measured on the odd ones
    assert {"miou", "iou_pedestrian"} <= set(report["odd_plain"]) and "miou" in report["odd_biased"]
    from glassbox.export.reexport import card_probe
    pipe = SegmentationPipeline.from_card(card_path, probe=card_probe(card))
    assert pipe.cfg.decision_bias == pytest.approx(tuple(bias))
