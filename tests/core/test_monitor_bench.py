"""The fault benchmark at a reduced size, on the shipped LiDAR model: behaviour, not the published numbers."""
from __future__ import annotations

import math

import pytest

from glassbox.monitor_eval import EvalConfig, evaluate_sensor
from glassbox.stages.build import card_path_for


@pytest.fixture(scope="module")
def lidar_result():
    if not card_path_for("lidar").is_file():
        pytest.skip("shipped LiDAR model missing")
    cfg = EvalConfig(sensors=("lidar",), faults=("blocked_sector", "rain_clutter"), severities=(1.0,),
                     calib_seeds=(100, 101, 102, 103), calib_frames_per_seed=6, test_seeds=(200, 201),
                     test_frames_per_seed=12, fault_every=2)
    return evaluate_sensor("lidar", cfg)


def test_strong_lidar_faults_are_detected_with_a_finite_delay(lidar_result):
    for name in ("blocked_sector", "rain_clutter"):
        case = lidar_result["faults"][name]["severities"]["1.0"]
        assert case["auroc"]["monitor"] > 0.9, (name, case["auroc"])
        assert case["delay_frames"] is not None and math.isfinite(case["delay_frames"])
        assert not case["alarm_before_onset"]
    # the point count cannot see rain clutter (every beam still returns): the monitor beats it there
    rain = lidar_result["faults"]["rain_clutter"]["severities"]["1.0"]["auroc"]
    assert rain["monitor"] - rain["input_point_count"] > 0.3


def test_no_false_alarm_on_a_short_nominal_run_and_signatures_per_fault(lidar_result):
    fa = lidar_result["false_alarms"]
    assert fa["frames"] == 24 and fa["events"] == 0
    sigs = lidar_result["signatures"]
    assert set(sigs) == {"blocked_sector", "rain_clutter"} and set(sigs["rain_clutter"]) == set(lidar_result["layers"])
    assert lidar_result["signature_accuracy"] is not None and lidar_result["signature_accuracy"] >= 0.8
