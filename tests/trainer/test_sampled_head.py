"""A sampled (variational / MC dropout) GEM head fitted on a frozen trunk through the trainer, exported with its
noise as a graph input, and run by the fusion pipeline and stage: what the shipped ``gem`` card goes through,
at a tiny size."""
import numpy as np
import pytest
import torch

from glassbox.models import load_card
from glassbox_trainer.cli import export_run
from glassbox_trainer.config import train_config_from_dict
from glassbox_trainer.train import train
from test_resume_tasks import camera_data


def config(cache, steps: int, **task) -> dict:
    return {"task": "fusion", "steps": steps, "batch_size": 2, "eval_batch_size": 2, "ckpt_every": steps,
            "eval_every": 0, "log_every": 2, "seed": 3, "device": "cpu",
            "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0}, "schedule": {"name": "constant"},
            "task_cfg": {"input_size": [64, 64], "train_frames": 4, "val_frames": 4, "dropout": 0.0,
                         "data": camera_data(cache), **task}}


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    """A deterministic stride-4 GEM trained a few steps: the trunk the heads are fitted on."""
    root = tmp_path_factory.mktemp("sampled")
    train(train_config_from_dict(config(root / "cache", 6, model={"stride": 4})), root / "det")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["variational", "mc_dropout"])
def test_head_fit_freezes_the_trunk_and_the_exported_card_runs_on_both_backends(trunk, kind, tmp_path):
    from glassbox import msg as gm
    from glassbox.bag.typestore import make_typestore
    from glassbox.pipelines import FusionPipeline
    from glassbox.stages import FusionStage

    raw = config(trunk / "cache", 6, model={"stride": 4, "head": kind, "head_samples": 4},
                 init_weights=str(trunk / "det" / "model.pt"), freeze_trunk=True)
    cfg = train_config_from_dict(raw)
    result = train(cfg, tmp_path / "run")
    before = torch.load(trunk / "det" / "model.pt", weights_only=True)
    after = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    trunk_keys = [k for k in before if k.split(".")[0] not in ("heatmap", "size", "offset")]
    assert trunk_keys and all(torch.equal(before[k], after[k]) for k in trunk_keys)   # BN statistics included
    mean = "heatmap.layer.mean.weight" if kind == "variational" else "heatmap.conv.weight"
    assert not torch.equal(before["heatmap.weight"], after[mean])                    # the head did train
    card_path = export_run(cfg, tmp_path / "run", result, tmp_path / "models", "cmd", default_name="gem_tiny")
    card = load_card(card_path)
    if kind == "variational":          # the graph returns the moments; the samples are formed at the peaks
        assert "head_noise" not in card.inputs and {"heatmap_std", "size_std", "offset_std"} <= set(card.outputs)
    else:
        assert card.inputs["head_noise"]["shape"] == [4, 3 * 64] and "dynamic" not in card.inputs["head_noise"]
    a, b = card.extra["score_calibration"]
    assert np.isfinite([a, b, card.extra["centre_variance_scale"]]).all()
    report = card.extra["report"]["calibration"]
    assert {"ece", "ece_raw", "centre_coverage_2sigma", "auroc_epistemic", "auroc_score_entropy"} <= set(report)
    assert card.extra.get("entropy_in_graph") is True

    torch_pipe = FusionPipeline.from_card(card_path, backend="torch", score_threshold=0.0, max_detections=20)
    ort_pipe = FusionPipeline.from_card(card_path, score_threshold=0.0, max_detections=20)
    rng = np.random.default_rng(0)
    rgb, thermal = rng.integers(0, 255, (64, 64, 3), np.uint8), rng.integers(0, 255, (64, 64), np.uint8)
    r_t, r_o = torch_pipe(rgb, thermal), ort_pipe(rgb, thermal)
    assert len(r_o.scores) == 20
    np.testing.assert_allclose(r_o.scores, r_t.scores, atol=1e-4)
    np.testing.assert_allclose(r_o.centre_var_epistemic, r_t.centre_var_epistemic, rtol=1e-3, atol=1e-6)
    # Platt scaling keeps the order of the raw scores; the parts are finite and non-negative
    assert (np.diff(r_o.scores) <= 1e-6).all()
    for part in (r_o.score_aleatoric, r_o.score_epistemic, r_o.centre_var_aleatoric, r_o.centre_var_epistemic):
        assert np.isfinite(part).all() and (part >= 0).all()
    assert (r_o.score_epistemic > 0).any() and (r_o.centre_var_epistemic > 0).any()

    f = gm.RosbagsFactory(make_typestore())
    stage = FusionStage(ort_pipe, f)
    out = stage.run(rgb, thermal, gm.make_header(f, 0, "cam"))
    unc = out.messages["detection_uncertainty"].detections
    dets = gm.detection2d_array_to_numpy(out.messages["detections"])
    var = r_o.centre_var_aleatoric + r_o.centre_var_epistemic
    for i, u in enumerate(unc):
        assert u.center_std ** 2 == pytest.approx(u.center_std_aleatoric ** 2 + u.center_std_epistemic ** 2)
        assert u.center_std ** 2 == pytest.approx(float(var[i].sum()), rel=1e-5)
        assert u.score_epistemic_nats == pytest.approx(float(r_o.score_epistemic[i]))
        assert (dets.covariance[i, 0], dets.covariance[i, 7]) == pytest.approx(tuple(var[i]), rel=1e-5)


def seg_config(cache, steps: int, **task) -> dict:
    return {"task": "segmentation", "steps": steps, "batch_size": 2, "eval_batch_size": 2, "ckpt_every": steps,
            "eval_every": 0, "log_every": 2, "seed": 3, "device": "cpu",
            "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0}, "schedule": {"name": "constant"},
            "task_cfg": {"mode": "multiclass", "loss": "ce", "input_size": [64, 64], "train_frames": 4,
                         "val_frames": 2, "data": camera_data(cache), **task}}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["variational", "mc_dropout"])
def test_bisenet_sampled_classifier_on_a_frozen_trunk_publishes_an_epistemic_map(trunk, kind, tmp_path):
    from glassbox import msg as gm
    from glassbox.bag.typestore import make_typestore
    from glassbox.pipelines import SegmentationPipeline
    from glassbox.stages import SegmentationStage

    det = tmp_path / "det"
    det_cfg = train_config_from_dict(seg_config(trunk / "cache", 4))
    det_result = train(det_cfg, det)
    raw = seg_config(trunk / "cache", 6, model={"head": kind, "head_samples": 4},
                     init_weights=str(det / "model.pt"), freeze_trunk=True)
    cfg = train_config_from_dict(raw)
    result = train(cfg, tmp_path / "run")
    before = torch.load(det / "model.pt", weights_only=True)
    after = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    trunk_keys = [k for k in before if not k.startswith("classifier.")]
    assert trunk_keys and all(torch.equal(before[k], after[k]) for k in trunk_keys)
    mean = "classifier.layer.mean.weight" if kind == "variational" else "classifier.conv.weight"
    assert not torch.equal(before["classifier.weight"], after[mean])
    card_path = export_run(cfg, tmp_path / "run", result, tmp_path / "models", "cmd", default_name="seg_tiny")
    card = load_card(card_path)
    assert "head_noise" in card.inputs
    report = card.extra["report"]["calibration"]
    assert 0.0 <= report["ece"] <= 1.0 and report["pixels"] > 0

    torch_pipe = SegmentationPipeline.from_card(card_path, backend="torch")
    ort_pipe = SegmentationPipeline.from_card(card_path)
    rgb = np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8)
    r_t, r_o = torch_pipe(rgb), ort_pipe(rgb)
    assert r_o.epistemic.shape == rgb.shape[:2] and (r_o.epistemic >= 0).all()
    np.testing.assert_allclose(r_o.epistemic, r_t.epistemic, atol=1e-4)
    assert (r_o.epistemic <= r_o.uncertainty + 1e-5).all()        # mutual information <= predictive entropy
    assert r_o.epistemic.max() > 0

    f = gm.RosbagsFactory(make_typestore())
    out = SegmentationStage(ort_pipe, f).step("rgb", rgb, gm.make_header(f, 0, "cam"), 0)
    assert gm.image_to_array(out.messages["epistemic_map"]).shape == rgb.shape[:2]
    plain = export_run(det_cfg, det, det_result, tmp_path / "models", "cmd", default_name="seg_det")
    plain_out = SegmentationStage(SegmentationPipeline.from_card(plain), f).step("rgb", rgb,
                                                                               gm.make_header(f, 0, "cam"), 0)
    assert "epistemic_map" not in plain_out.messages and "uncertainty_map" in plain_out.messages


def lidar_config(cache, steps: int, **task) -> dict:
    return {"task": "lidar", "steps": steps, "batch_size": 2, "eval_batch_size": 2, "ckpt_every": steps,
            "eval_every": 0, "log_every": 2, "seed": 3, "device": "cpu",
            "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0}, "schedule": {"name": "constant"},
            "task_cfg": {"train_frames": 3, "val_frames": 4, "crop_width": 64, "cache_dir": str(cache),
                         "decode": {"score_threshold": 0.05, "box_vote_classes": [0, 1, 2]}, **task}}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["variational", "mc_dropout"])
def test_lidar_sampled_head_on_a_frozen_trunk_publishes_calibrated_parts(trunk, kind, tmp_path):
    from glassbox import msg as gm
    from glassbox.bag.typestore import make_typestore
    from glassbox.datasets.synthetic import SyntheticLidarDataset
    from glassbox.lidar.spi import peak_parts
    from glassbox.pipelines import LidarDetectionPipeline
    from glassbox.stages import LidarStage

    cache = trunk / "lidar_cache"
    det = tmp_path / "det"
    train(train_config_from_dict(lidar_config(cache, 6)), det)
    raw = lidar_config(cache, 6, model={"head": kind, "head_samples": 4}, init_weights=str(det / "model.pt"),
                       freeze_trunk=True)
    cfg = train_config_from_dict(raw)
    result = train(cfg, tmp_path / "run")
    before = torch.load(det / "model.pt", weights_only=True)
    after = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    trunk_keys = [k for k in before if k.split(".")[0] not in ("heatmap", "offset")]
    assert trunk_keys and all(torch.equal(before[k], after[k]) for k in trunk_keys)   # size, yaw, BN stats too
    mean = "heatmap.layer.mean.weight" if kind == "variational" else "heatmap.conv.weight"
    assert not torch.equal(before["heatmap.weight"], after[mean])
    card_path = export_run(cfg, tmp_path / "run", result, tmp_path / "models", "cmd", default_name="spi_tiny")
    card = load_card(card_path)
    if kind == "variational":          # the graph returns the moments; the samples are formed at the peaks
        assert "head_noise" not in card.inputs and {"heatmap_std", "offset_log_var_std"} <= set(card.outputs)
    else:
        assert card.inputs["head_noise"]["shape"] == [4, 2 * 24] and "dynamic" not in card.inputs["head_noise"]
    assert card.extra.get("entropy_in_graph") is True
    assert np.isfinite([*card.extra["score_calibration"], card.extra["centre_variance_scale"]]).all()
    assert {"ece", "ece_raw", "centre_coverage_2sigma", "auroc_epistemic"} <= set(card.extra["report"]["calibration"])

    scan = SyntheticLidarDataset("val", size=1, lidar="hdl64", seed=0, cache_dir=cache).arrays(0)
    from dataclasses import replace

    from glassbox.config import from_dict
    from glassbox.lidar import DecodeConfig
    dec = replace(from_dict(DecodeConfig, card.extra["decode"]), score_threshold=0.0, max_detections=20)
    pipes = {b: LidarDetectionPipeline.from_card(card_path, backend=b, decode=dec) for b in ("torch", "onnxruntime")}
    r_t, r_o = (pipes[b](scan["points"], scan["ring"]) for b in ("torch", "onnxruntime"))
    assert len(r_o.detections) == 20
    np.testing.assert_allclose(r_o.detections.scores, r_t.detections.scores, atol=1e-4)
    u = r_o.uncertainty
    np.testing.assert_allclose(u.centre_cov_epistemic, r_t.uncertainty.centre_cov_epistemic, rtol=1e-3, atol=1e-7)
    for cov in (u.centre_cov_aleatoric, u.centre_cov_epistemic):      # symmetric positive semi-definite
        np.testing.assert_allclose(cov, cov.transpose(0, 2, 1), atol=1e-12)
        assert (np.linalg.eigvalsh(cov) >= -1e-12).all()
    # the covariance is the viewing-frame variance turned by the azimuth: its trace does not depend on the turn
    d = r_o.detections
    heads, _ = pipes["onnxruntime"].network(pipes["onnxruntime"].project(scan["points"], scan["ring"])[1])
    k = card.extra["centre_variance_scale"]
    r, c = d.pixels[:, 0], d.pixels[:, 1]
    at = peak_parts(pipes["onnxruntime"].cfg.model, heads, d.classes, r, c)
    np.testing.assert_allclose(np.trace(u.centre_cov_aleatoric, axis1=1, axis2=2),
                               k * at["offset_var_aleatoric"].sum(0), rtol=1e-4)
    assert (u.score_epistemic >= 0).all() and (u.score_epistemic > 0).any()
    np.testing.assert_allclose(d.score_entropy, -(d.scores * np.log(d.scores) + (1 - d.scores) * np.log1p(-d.scores)),
                               atol=1e-4)                           # the entropy of the calibrated score

    f = gm.RosbagsFactory(make_typestore())
    stage = LidarStage(pipes["onnxruntime"], f)
    out = stage.step("points", (scan["points"], scan["ring"]), gm.make_header(f, 0, "lidar"), 0)
    unc = out.messages["detection_uncertainty"].detections
    arr = gm.detection3d_array_to_numpy(out.messages["detections"])
    total = u.centre_cov_aleatoric + u.centre_cov_epistemic
    for i, m in enumerate(unc):
        assert m.center_std ** 2 == pytest.approx(m.center_std_aleatoric ** 2 + m.center_std_epistemic ** 2, rel=1e-5)
        assert m.score_epistemic_nats == pytest.approx(float(u.score_epistemic[i]), rel=1e-5)
        np.testing.assert_allclose(arr.covariance[i].reshape(6, 6)[:3, :3], total[i], rtol=1e-5, atol=1e-12)
