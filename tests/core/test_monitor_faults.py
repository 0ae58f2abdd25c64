"""Fault injectors, the benchmark's statistics (AUROC, ROC, delay, alarms), fault signatures and recorded profiles."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from glassbox.faults import FAULTS, FaultError, fault_sequence, inject
from glassbox.models.card import EntropyReference, ModelCard, save_card
from glassbox.monitor import (EntropyMonitor, LayerReference, Level, MonitorConfig, ReferenceProfileError,
                              layer_statistics, load_references, nearest_signature)
from glassbox.monitor_eval import alarm_events, auroc, detection_delay, roc_curve

RNG = np.random.default_rng


def _pairwise_auroc(neg, pos):
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])


def test_auroc_hand_cases_and_pairwise_definition():
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1, 1], [1, 1]) == 0.5
    assert auroc([1, 2, 3], [2]) == pytest.approx(0.5)            # beats 1, ties 2, loses to 3
    neg, pos = RNG(0).integers(0, 6, 40).astype(float), RNG(1).integers(2, 8, 30).astype(float)   # many ties
    assert auroc(neg, pos) == pytest.approx(_pairwise_auroc(neg, pos))
    assert np.isnan(auroc([], [1.0]))


def test_roc_curve_runs_corner_to_corner_and_its_area_is_the_auroc():
    neg, pos = RNG(2).normal(0, 1, 50), RNG(3).normal(1, 1, 60)
    fpr, tpr = roc_curve(neg, pos)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(neg, pos))


def test_detection_delay_and_alarm_events():
    levels = [0, 0, 1, 0, 0, 0, 2, 2, 1, 0]
    assert detection_delay(levels, onset=3) == 3 and detection_delay(levels, onset=9) is None
    assert alarm_events(levels) == 2 and alarm_events([0] * 5) == 0


def _cloud(n=4000, seed=0):
    rng = RNG(seed)
    az, el, r = rng.uniform(-np.pi, np.pi, n), rng.uniform(-0.4, 0.05, n), rng.uniform(2, 60, n)
    pts = np.column_stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el),
                           rng.uniform(0, 1, n)]).astype(np.float32)
    return pts, rng.integers(0, 64, n)


def test_lidar_faults_do_what_their_docstrings_say():
    pts, ring = _cloud()
    az = np.degrees(np.arctan2(pts[:, 1], pts[:, 0]))
    out, out_ring = inject("blocked_sector", (pts, ring), 1.0, RNG(0))
    assert len(out) == int((np.abs(az) >= 60).sum()) and len(out_ring) == len(out)
    out, out_ring = inject("beam_dropout", (pts, ring), 1.0, RNG(0))
    assert len(np.unique(out_ring)) == 64 - round(0.6 * 64)
    tilted, _ = inject("mount_tilt", (pts, ring), 1.0, RNG(0))
    np.testing.assert_allclose(np.linalg.norm(tilted[:, :3], axis=1), np.linalg.norm(pts[:, :3], axis=1), rtol=1e-5)
    fog, _ = inject("fog_attenuation", (pts, ring), 1.0, RNG(0))
    assert len(fog) < 0.6 * len(pts) and fog[:, 3].max() <= pts[:, 3].max()
    scaled, _ = inject("intensity_scale", (pts, ring), 0.5, RNG(0))
    np.testing.assert_allclose(scaled[:, 3], pts[:, 3] * 3.0, rtol=1e-6)
    rain, _ = inject("rain_clutter", (pts, ring), 1.0, RNG(0))
    near = np.linalg.norm(rain[:, :3], axis=1) < 8
    assert 0.2 < near.mean() - (np.linalg.norm(pts[:, :3], axis=1) < 8).mean() < 0.4
    for name in ("blocked_sector", "beam_dropout", "fog_attenuation"):      # severity 0: unchanged
        np.testing.assert_array_equal(inject(name, (pts, ring), 0.0, RNG(0))[0], pts)


def test_camera_faults_keep_shape_and_dtype_and_frozen_repeats():
    rgb = RNG(0).integers(0, 256, (48, 64, 3)).astype(np.uint8)
    thermal = RNG(1).integers(26000, 33000, (48, 64)).astype(np.uint16)
    for name, fault in FAULTS.items():
        if fault.sensor == "lidar":
            continue
        x = rgb if fault.sensor == "rgb" else thermal
        y = inject(name, x, 1.0, RNG(2))
        assert y.shape == x.shape and y.dtype == x.dtype, name
        assert fault.temporal or not np.array_equal(y, x), f"{name} at severity 1 changed nothing"
    assert inject("night", rgb, 1.0, RNG(0)).mean() < 0.2 * rgb.mean()
    assert (inject("thermal_dropout", thermal, 1.0, RNG(0)) == 0).all(axis=1).mean() > 0.3
    frames = [rgb, rgb[::-1].copy(), rgb[:, ::-1].copy()]
    assert all(np.array_equal(f, rgb) for f in fault_sequence(frames, "frozen_frame", 1.0))
    with pytest.raises(FaultError, match="severity"):
        inject("blur", rgb, 1.5, RNG(0))
    with pytest.raises(FaultError, match="unknown fault"):
        inject("gremlins", rgb, 0.5, RNG(0))


def test_nearest_signature_and_the_status_names_it_only_when_alarmed():
    sigs = {"blocked": {"a": 5.0, "b": -1.0}, "fog": {"a": -4.0, "b": 4.0}}
    assert nearest_signature({"a": 10.0, "b": -2.0}, sigs) == ("blocked", pytest.approx(1.0))
    assert nearest_signature({"a": 1.0}, {}) is None
    ref = {"m": {"a": LayerReference(0.0, 1.0), "b": LayerReference(0.0, 1.0)}}
    mon = EntropyMonitor(ref, MonitorConfig(smoothing=1.0), signatures={"m": sigs})
    ok = mon.update("m", ["a", "b"], [0.5, 0.2])
    assert ok.level == Level.OK and ok.likely_fault is None and "likely" not in ok.message
    err = mon.update("m", ["a", "b"], [-7.0, 6.0])
    assert err.level == Level.ERROR and err.likely_fault[0] == "fog" and "likely fault: fog (similarity" in err.message


def test_layer_statistics_closed_form():
    x = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [10.0, 10.0]])
    a, b = layer_statistics(x)
    assert a["mean"] == 4.0 and a["median"] == 2.5 and a["std"] == pytest.approx(np.std(x[:, 0], ddof=1))
    assert a["robust_std"] == pytest.approx(1.4826 * 1.0) and b["std"] == 0.0 and b["robust_std"] == 0.0


def _card(tmp_path, sha="a" * 64):
    path = tmp_path / "card.yaml"
    save_card(ModelCard(name="n", task="toy", file="n.onnx", sha256=sha,
                        entropy_reference=EntropyReference("knn", {"k": "1"}, ("x",), (2.0,), (0.1,), 10)), path)
    return path


def test_recorded_profile_overrides_the_card_and_is_refused_for_another_model_file(tmp_path):
    card = _card(tmp_path)
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"models:\n  n:\n    card_sha256: {'a' * 64}\n    frames: 50\n"
                       "    layers:\n      x: {mean: 7.0, std: 0.5, median: 7.1, robust_std: 0.4}\n")
    for order in ([card, profile], [profile, card]):
        assert load_references(order)["n"]["x"] == LayerReference(7.0, 0.5)
    (tmp_path / "other").mkdir()
    other = _card(tmp_path / "other", sha="b" * 64)
    with pytest.raises(ReferenceProfileError, match="recorded with the model whose sha256 is aaaaaaaaaaaa"):
        load_references([other, profile])
