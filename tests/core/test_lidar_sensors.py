"""Sensor profiles against the datasheets; one profile for simulation, projection and card; clouds of other sensors
resampled into a model's geometry (rows by elevation, intensity rescaled) or rejected with a reason."""
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from glassbox import msg as gm
from glassbox.config import from_dict
from glassbox.entropy import ProbeConfig
from glassbox.lidar import (SENSORS, CloudFit, DecodeConfig, ProjectionConfig, SensorError, SensorMismatchError,
                            SensorProfile, SpiConfig, profile_from_projection, project_points, sensor_profile)
from glassbox.models.card import ModelCard, load_card, save_card
from glassbox.pipelines.common import card_settings
from glassbox.pipelines.lidar import LidarDetectionConfig, LidarDetectionPipeline, card_extra
from glassbox.sim import SceneConfig, lidar_preset, make_scene, scan_lidar
from glassbox.stages.lidar import LidarStage

# name: beams, bottom and top beam (deg), columns per turn, intensity full scale, driver's ring 0
DATASHEET = {"vlp16": (16, -15.0, 15.0, 1800, 255, "bottom_first"),
             "vlp32c": (32, -25.0, 15.0, 1800, 255, "bottom_first"),
             "hdl32": (32, -30.67, 10.67, 2170, 255, "bottom_first"),
             "hdl64": (64, -24.33, 2.0, 2048, 1, "bottom_first"),
             "os1_64": (64, -16.6, 16.6, 1024, 65535, "top_first"),
             "os1_128": (128, -22.5, 22.5, 1024, 65535, "top_first")}


def test_presets_match_the_datasheets():
    assert set(SENSORS) == set(DATASHEET)
    for name, (beams, lo, hi, columns, full_scale, ring_order) in DATASHEET.items():
        p = sensor_profile(name)
        assert (p.num_beams, p.columns, p.intensity_max, p.ring_order) == (beams, columns, full_scale, ring_order)
        assert p.elevations_deg[-1] == pytest.approx(lo, abs=1e-3) and p.elevations_deg[0] == pytest.approx(hi, abs=1e-3)
        assert p.fov_up_deg > hi and p.fov_down_deg < lo
    np.testing.assert_allclose(sensor_profile("vlp16").spacing_deg, 2.0)
    np.testing.assert_allclose(sensor_profile("hdl32").spacing_deg, 4 / 3, atol=0.011)      # 1.33 as printed
    hdl64 = sensor_profile("hdl64").spacing_deg
    np.testing.assert_allclose(hdl64[:31], 1 / 3, atol=2e-3)                # upper block +2 .. -8.33
    assert hdl64[31] == pytest.approx(0.5, abs=1e-3)                          # -8.33 -> -8.83
    np.testing.assert_allclose(hdl64[32:], 0.5, atol=2e-3)                  # lower block -8.83 .. -24.33
    vlp32 = np.asarray(sensor_profile("vlp32c").elevations_deg)
    dense = (vlp32 <= 1.667 + 1e-6) & (vlp32 >= -4.0 - 1e-6)
    assert dense.sum() == 18 and -1.0 in vlp32                               # 1/3 deg apart around -1 deg
    np.testing.assert_allclose(-np.diff(vlp32[dense]), 1 / 3, atol=2e-3)
    assert sensor_profile("vlp32c").spacing_deg.max() == pytest.approx(9.361)   # -15.639 -> -25
    for name, top in (("os1_64", 16.6), ("os1_128", 22.5)):                  # uniform
        p = sensor_profile(name)
        np.testing.assert_allclose(p.spacing_deg, 2 * top / (p.num_beams - 1), atol=1e-3)


def test_profile_errors():
    with pytest.raises(SensorError, match="unknown LiDAR sensor 'vlp17'"):
        sensor_profile("vlp17")
    with pytest.raises(SensorError, match="strictly decreasing"):
        SensorProfile("x", (-1.0, 1.0), columns=100, min_range_m=0.5, max_range_m=50.0)
    with pytest.raises(SensorError, match="intensity_units"):
        SensorProfile("x", (1.0, -1.0), columns=100, min_range_m=0.5, max_range_m=50.0, intensity_units="volts")
    with pytest.raises(SensorError, match="beam table"):
        CloudFit(sensor_profile("vlp16"), ProjectionConfig.from_profile(sensor_profile("hdl64")))


def test_simulator_and_projection_build_from_the_profile():
    for name in SENSORS:
        p, sim = sensor_profile(name), lidar_preset(name)
        proj = ProjectionConfig.from_profile(p, width=512)
        assert sorted(sim.elevations_deg, reverse=True) == list(p.elevations_deg) == list(proj.beam_elevations_deg)
        assert (sim.azimuth_steps, sim.max_range_m, sim.intensity_max, sim.ring_order) == \
            (p.columns, p.max_range_m, p.intensity_max, p.ring_order)
        assert (proj.height, proj.width, proj.ring_order, proj.max_range_m) == (p.num_beams, 512, p.ring_order,
                                                                                 p.max_range_m)
        assert proj.mean[proj.channels.index("intensity")] == pytest.approx(0.3 * p.intensity_max)
    assert ProjectionConfig.from_profile(sensor_profile("os1_64")).width == 1024


def test_profile_round_trips_through_the_card(tmp_path):
    prof = sensor_profile("os1_128")
    proj = ProjectionConfig.from_profile(prof, width=512)
    card = ModelCard(name="m", task="lidar", file="m.onnx", sha256="0" * 64,
                     extra=card_extra(proj, SpiConfig(), DecodeConfig(), prof))
    back = load_card(save_card(card, tmp_path / "m.card.yaml"))
    assert back.extra["sensor"]["elevations_deg"] == list(prof.elevations_deg)
    known = {f.name for f in fields(LidarDetectionConfig)}
    cfg = from_dict(LidarDetectionConfig, card_settings(back, known))
    assert cfg.sensor == prof and cfg.projection == proj
    # the shipped card records the HDL-64E profile at full width
    shipped = load_card(Path(__file__).resolve().parents[2] / "models" / "spi_lidar.card.yaml")
    cfg = from_dict(LidarDetectionConfig, card_settings(shipped, known))
    assert cfg.sensor == sensor_profile("hdl64") and (cfg.projection.height, cfg.projection.width) == (64, 2048)
    # a card that records no profile (cards made before profiles existed) gets it from its projection's beams
    legacy = {k: v for k, v in card_settings(shipped, known).items() if k != "sensor"}
    cfg = from_dict(LidarDetectionConfig, legacy)
    assert cfg.sensor is None and profile_from_projection(cfg.projection) == sensor_profile("hdl64")


@pytest.mark.parametrize("name", SENSORS)
def test_scan_of_a_sensor_fills_its_own_range_image(name):
    scene = make_scene(3, SceneConfig(length_m=80.0))
    scan = scan_lidar(scene, lidar_preset(name), scene.ego_pose(1.0), 1, t=1.0)
    prof = sensor_profile(name)
    fit = CloudFit(prof, ProjectionConfig.from_profile(prof))
    points, ring = fit(scan.points, scan.ring)
    assert points is scan.points and fit.state == "" and fit.notices == []       # the model's own sensor
    for use_ring in (True, False):                                              # rows from ring / from elevation
        image = project_points(points, ProjectionConfig.from_profile(prof, use_ring=use_ring), ring=ring)
        assert image.mask.sum() >= 0.95 * len(scan), (use_ring, image.mask.sum() / len(scan), image.dropped)


def _sphere_cloud(elevations_deg, columns=256, r=10.0, intensity_max=65535.0, top_first=True):
    """A ring cloud at range r, every beam at every column; ring 0 = first elevation given (top) or the last."""
    e = np.deg2rad(np.repeat(np.asarray(elevations_deg, np.float64), columns))
    a = np.tile(np.pi - 2 * np.pi * (np.arange(columns) + 0.5) / columns, len(elevations_deg))
    beam = np.repeat(np.arange(len(elevations_deg)), columns)
    ring = beam if top_first else len(elevations_deg) - 1 - beam
    inten = np.random.default_rng(0).integers(0, int(intensity_max) + 1, e.size).astype(np.float64)
    pts = np.stack([r * np.cos(e) * np.cos(a), r * np.cos(e) * np.sin(a), r * np.sin(e), inten], 1)
    return pts.astype(np.float32), ring.astype(np.int64)


def _model():
    prof = sensor_profile("hdl64")
    return prof, ProjectionConfig.from_profile(prof, width=512)


def test_128_beam_cloud_lands_on_the_nearest_model_rows_and_is_reported_once():
    prof, proj = _model()
    os1 = sensor_profile("os1_128")
    points, ring = _sphere_cloud(os1.elevations_deg)
    # independent truth: the nearest beam of the HDL-64E table, inside half a spacing beyond the outer beams
    table = np.asarray(prof.elevations_deg)
    elev = np.rad2deg(np.arcsin(points[:, 2] / np.linalg.norm(points[:, :3], axis=1)))
    nearest = np.abs(elev[:, None] - table[None]).argmin(1)
    inside = (elev <= prof.fov_up_deg) & (elev >= prof.fov_down_deg)
    fit = CloudFit(prof, proj)
    for _ in range(3):
        fitted, mapped = fit(points, ring)
    image = project_points(fitted, proj, ring=mapped)
    rows, _ = np.nonzero(image.mask)
    src = image.point_index[image.mask]
    np.testing.assert_array_equal(rows, nearest[src])                     # every pixel on its nearest row
    assert set(rows) == set(nearest[inside])
    assert image.dropped["out_of_fov"] == np.count_nonzero(~inside)
    np.testing.assert_allclose(image.intensity[image.mask], points[src, 3] / 65535.0, rtol=1e-6)
    # the ring taken as the row (what the projection did before) would put most of them elsewhere
    naive = project_points(points, proj, ring=ring)
    assert np.mean(np.nonzero(naive.mask)[0] != nearest[naive.point_index[naive.mask]]) > 0.5
    assert len(fit.notices) == 2 and fit.state == "; ".join(fit.notices)
    fit(points[ring > 0], ring[ring > 0])                        # top ring without returns: said already
    assert len(fit.notices) == 2 and fit.state != "; ".join(fit.notices) and "(+22.1..-22.5 deg)" in fit.state
    assert "128-ring cloud" in fit.notices[0] and "resampled to the model's 64 rows" in fit.notices[0]
    assert "intensity 0-65535 rescaled to the model's 0-1" in fit.notices[1]
    assert fit.info()["sensor/rows"] == "ring remapped by elevation" and fit.info()["sensor"] == "hdl64"


def test_ring_order_and_intensity_units_are_matched():
    prof, proj = _model()
    fit = CloudFit(prof, proj)
    # the model's own beams numbered top first (an Ouster-style driver), 0-255 intensities
    points, ring = _sphere_cloud(prof.elevations_deg, intensity_max=255.0, top_first=True)
    fitted, mapped = fit(points, ring)
    np.testing.assert_array_equal(mapped, 63 - ring)                     # the model's ring 0 is the lowest beam
    np.testing.assert_allclose(fitted[:, 3], points[:, 3] / 255.0, rtol=1e-6)
    assert points[:, 3].max() > 1                                          # the input is left as it was
    # a cloud without a ring field: rows from elevation, nothing to report for a cloud inside the FOV
    fit = CloudFit(prof, proj)
    points, _ = _sphere_cloud(prof.elevations_deg, intensity_max=1.0)
    points[:, 3] /= points[:, 3].max()
    fitted, none = fit(points, None)
    assert none is None and fitted is points and fit.state == "" and fit.info()["sensor/rows"] == "elevation"


def test_impossible_clouds_are_rejected_with_a_reason():
    prof, proj = _model()
    high, ring = _sphere_cloud(np.linspace(45.0, 30.0, 16), intensity_max=255.0)
    with pytest.raises(SensorMismatchError, match="no beam of the cloud .* vertical field of view"):
        CloudFit(prof, proj)(high, ring)
    with pytest.raises(SensorMismatchError, match="no point of the cloud"):
        CloudFit(prof, proj)(high, None)
    points, ring = _sphere_cloud(prof.elevations_deg)
    points[:, 3] *= 100.0
    with pytest.raises(SensorMismatchError, match="fits no known unit"):
        CloudFit(prof, proj)(points, ring)


@pytest.fixture(scope="module")
def stage():
    torch.manual_seed(0)
    prof, proj = _model()
    pipe = LidarDetectionPipeline(LidarDetectionConfig(backend="torch", threads=1, sensor=prof, projection=proj,
                                                       probe=ProbeConfig(enabled=False)))
    from glassbox.bag.typestore import make_typestore
    return LidarStage(pipe, gm.RosbagsFactory(make_typestore()))


def _msg(stage, points, ring, sec):
    cloud = gm.xyz_to_structured(points, extra={"ring": ring.astype(np.uint16)})
    return gm.make_pointcloud2(stage.factory, cloud, gm.make_header(stage.factory, sec * 10 ** 9, "lidar"))


def test_stage_resamples_reports_and_rejects(stage):
    os1 = sensor_profile("os1_128")
    points, ring = _sphere_cloud(os1.elevations_deg)
    for sec in (1, 2):
        out = stage.feed("lidar", _msg(stage, points, ring, sec), sec * 10 ** 9)
        assert out is not None and out.result.range_image.shape == (64, 512)
    assert "resampled to the model's 64 rows" in stage.state and len(stage.pipeline.fit.notices) == 2
    assert stage.info()["sensor/cloud"].startswith("128 rings, +22.5..-22.5 deg")
    high, ring = _sphere_cloud(np.linspace(45.0, 30.0, 16))
    with pytest.raises(gm.ConversionError, match="vertical field of view") as exc:
        stage.feed("lidar", _msg(stage, high, ring, 3), 3 * 10 ** 9)
    assert exc.value.reason == "sensor_mismatch"


def test_nonfinite_and_out_of_range_points_are_dropped_before_projection(stage):
    prof, proj = _model()
    pipe = stage.pipeline
    points, ring = _sphere_cloud(prof.elevations_deg, intensity_max=1.0, top_first=False)
    bad = points.copy()
    rng = np.random.default_rng(1)
    idx = rng.choice(len(bad), 50, replace=False)
    bad[idx[:10], 0] = np.nan                        # 10 NaN coordinates
    bad[idx[10:20], 2] = -np.inf                     # 10 inf coordinates
    bad[idx[20:25], 3] = np.nan                      # 5 NaN intensities
    bad[idx[25:35], 1] = 1e38                        # 10 flipped-byte coordinates: finite, far beyond range
    bad[idx[35:50], :3] *= 13.0                      # 15 returns at 130 m > the HDL-64E's 120 m
    keep = np.ones(len(bad), bool)
    keep[idx] = False
    before = dict(pipe.fit.dropped)
    image, x = pipe.project(bad, ring)
    assert {k: pipe.fit.dropped[k] - before[k] for k in before} == {"nonfinite": 25, "out_of_range": 25}
    clean_image, clean_x = pipe.project(points[keep], ring[keep])
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(x, clean_x)        # projected and normalised exactly like the clean cloud
    np.testing.assert_array_equal(image.range, clean_image.range)
    np.testing.assert_array_equal(image.point_index, clean_image.point_index)
    assert int(image.mask.sum()) == int(keep.sum()) == len(points) - 50      # one point per pixel, none lost
    assert stage.info()["dropped_points/nonfinite"] == str(pipe.fit.dropped["nonfinite"])


def test_a_cloud_with_no_valid_point_is_rejected_as_empty(stage):
    prof, _ = _model()
    points, ring = _sphere_cloud(prof.elevations_deg[:2], columns=8, intensity_max=1.0)
    points[:8, 0] = np.inf
    points[8:, :3] *= 1000.0
    before = dict(stage.pipeline.fit.dropped)
    with pytest.raises(gm.ConversionError, match="no point of the cloud is finite") as exc:
        stage.feed("lidar", _msg(stage, points, ring, 50), 50 * 10 ** 9)
    assert exc.value.reason == "empty"
    assert {k: stage.pipeline.fit.dropped[k] - before[k] for k in before} == {"nonfinite": 8, "out_of_range": 8}
