"""LiDAR pipeline: torch and ONNX Runtime backends agree; entropy profiles from both; model card round trip."""
import numpy as np
import pytest
import torch

from glassbox.entropy import ProbeConfig
from glassbox.lidar import DecodeConfig, ProjectionConfig, SpiConfig, build_model, sensor_profile
from glassbox.export import export_with_features
from glassbox.pipelines.lidar import INPUT_NAME, LidarDetectionConfig, LidarDetectionPipeline, LidarPipelineError
from glassbox.sim import lidar_preset, make_scene, scan_lidar, SceneConfig


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scan():
    lidar = lidar_preset("hdl32")
    scene = make_scene(7, SceneConfig(length_m=80.0))
    return scan_lidar(scene, lidar, scene.ego_pose(1.0), 7, t=1.0), lidar


def _projection(lidar) -> ProjectionConfig:
    beams = tuple(sorted(lidar.elevations_deg, reverse=True))
    return ProjectionConfig(height=32, width=512, fov_up_deg=beams[0] + 0.7, fov_down_deg=beams[-1] - 0.7,
                            beam_elevations_deg=beams, ring_order="bottom_first")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, scan):
    torch.manual_seed(3)
    model = build_model("spi", SpiConfig()).eval()
    with torch.no_grad():                      # livelier than the default init: a spread of heatmap scores
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 2.0)
                mod.bias.uniform_(-0.3, 0.3)
    d = tmp_path_factory.mktemp("spi")
    torch.save(model.state_dict(), d / "spi.pt")
    spec = export_with_features(model, {INPUT_NAME: torch.zeros(1, 5, 32, 512)}, d / "spi.onnx",
                                dynamic_spatial=True)
    return d, spec


def _config(scan, d, backend):
    return LidarDetectionConfig(
        backend=backend, model_path=str(d / ("spi.pt" if backend == "torch" else "spi.onnx")),
        projection=_projection(scan[1]), model=SpiConfig(),
        decode=DecodeConfig(score_threshold=0.05, max_peaks=200, max_detections=200, nms_iou=0.5),
        probe=ProbeConfig(max_samples=32, max_dim=128))


def test_torch_and_onnxruntime_give_the_same_detections(scan, exported):
    d, spec = exported
    assert spec["outputs"] == ["heatmap", "offset", "size", "yaw"] and spec["features"][-1] == "neck"
    lidar_scan = scan[0]
    res = {b: LidarDetectionPipeline(_config(scan, d, b))(lidar_scan.points, ring=lidar_scan.ring)
           for b in ("torch", "onnxruntime")}
    a, b = res["torch"].detections, res["onnxruntime"].detections
    assert len(a) > 5
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert np.max(np.abs(a.scores - b.scores)) <= 1e-4
    np.testing.assert_allclose(a.centers, b.centers, atol=1e-3)
    # both backends yield an entropy profile over the same layers, with close values
    pa, pb = res["torch"].entropy, res["onnxruntime"].entropy
    assert pa.layer_names == pb.layer_names == spec["features"]
    np.testing.assert_allclose(pa.entropy_nats, pb.entropy_nats, rtol=1e-3, atol=1e-3)
    for r in res.values():
        assert set(r.timings_ms) == {"project", "network", "entropy", "decode", "total"}
        assert r.range_image.shape == (32, 512)


def test_dynamic_width_and_probe_every_n(scan, exported):
    d, _ = exported
    cfg = _config(scan, d, "onnxruntime")
    from dataclasses import replace
    cfg = replace(cfg, projection=replace(cfg.projection, width=1024), probe=ProbeConfig(every_n=2, max_samples=16))
    pipe = LidarDetectionPipeline(cfg)
    first, second = pipe(scan[0].points, ring=scan[0].ring), pipe(scan[0].points, ring=scan[0].ring)
    assert first.range_image.shape == (32, 1024)
    assert first.entropy is not None and second.entropy is None


def test_warmup_at_build_or_on_demand(scan, exported):
    """warmup_runs=0 builds without running the network; warmup() then runs it as frames will (with the entropy
    part, and once more without when some frames go without it); the frames after it are the same."""
    from dataclasses import replace
    d, _ = exported
    cfg = replace(_config(scan, d, "onnxruntime"), warmup_runs=0, probe=ProbeConfig(every_n=2, max_samples=16))
    pipe = LidarDetectionPipeline(cfg)
    calls = []
    run = pipe.runtime.run
    pipe.runtime.run = lambda feed, entropy=True: (calls.append((feed[INPUT_NAME].shape, entropy)),
                                                   run(feed, entropy=entropy))[1]
    pipe.warmup()
    shape = (1, 5, cfg.projection.height, cfg.projection.width)
    assert calls == [(shape, True), (shape, False)]
    warm = LidarDetectionPipeline(replace(cfg, warmup_runs=1))
    a, b = pipe(scan[0].points, ring=scan[0].ring), warm(scan[0].points, ring=scan[0].ring)
    np.testing.assert_array_equal(a.detections.scores, b.detections.scores)


def test_configuration_errors(scan, exported):
    d, _ = exported
    with pytest.raises(LidarPipelineError):
        LidarDetectionPipeline(LidarDetectionConfig(model=SpiConfig(in_channels=4)))
    with pytest.raises(LidarPipelineError):
        LidarDetectionPipeline(LidarDetectionConfig(backend="onnxruntime", model_path=str(d / "spi.pt")))
    with pytest.raises(LidarPipelineError):
        LidarDetectionPipeline(LidarDetectionConfig(backend="tensorflow"))


def test_shipped_model_card_round_trip_and_parity():
    from pathlib import Path

    from glassbox.datasets.synthetic import SyntheticLidarDataset

    card = Path(__file__).resolve().parents[2] / "models" / "spi_lidar.card.yaml"
    frame = SyntheticLidarDataset("test", size=1, lidar="hdl64", seed=0).arrays(0)
    res = {b: LidarDetectionPipeline.from_card(card, backend=b, threads=1)(frame["points"], ring=frame["ring"])
           for b in ("torch", "onnxruntime")}
    a, b = res["torch"].detections, res["onnxruntime"].detections
    assert len(a) == len(b) and len(a) > 0
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert np.max(np.abs(a.scores - b.scores)) <= 1e-4
    # the trained model finds the cars of an unseen street: most confident detections sit on ground-truth cars
    cars = frame["boxes"][(frame["box_classes"] == 0) & (frame["box_points"] >= 10)]
    top = a.centers[(a.classes == 0) & (a.scores > 0.5)]
    assert len(top) > 0 and len(cars) > 0
    dist = np.linalg.norm(top[:, None, :2] - cars[None, :, :2], axis=-1).min(axis=1)
    assert np.mean(dist < 1.5) >= 0.6


def test_stage_builder_makes_both_backends_from_the_shipped_card():
    """What the node builds: the torch backend too, with profiles named after the card (the monitor's key)."""
    from pathlib import Path

    from glassbox.datasets.synthetic import SyntheticLidarDataset
    from glassbox.stages.build import build_pipeline

    card_path = Path(__file__).resolve().parents[2] / "models" / "spi_lidar.card.yaml"
    frame = SyntheticLidarDataset("test", size=1, lidar="hdl64", seed=0).arrays(0)
    res = {}
    for backend in ("torch", "onnxruntime"):
        pipeline, card = build_pipeline("lidar", card_path, backend=backend, threads=1)
        res[backend] = pipeline(frame["points"], ring=frame["ring"])
        assert res[backend].entropy.model_name == card.name == "spi_lidar"
        # the shipped card records no sensor profile: it gets the HDL-64E one, which its training scans match
        assert pipeline.fit.profile == sensor_profile("hdl64") and pipeline.fit.state == ""
    a, b = res["torch"].detections, res["onnxruntime"].detections
    assert len(a) == len(b) > 0
    assert np.max(np.abs(a.scores - b.scores)) <= 1e-4
