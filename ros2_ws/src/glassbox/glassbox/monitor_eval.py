"""The entropy monitor as a fault detector: AUROC, detection delay and false alarms, against simple baselines.

Frames are rendered by ``glassbox.sim`` in daylight (the nominal condition) and run through the shipped
pipeline that watches each sensor (``SENSOR_CAPABILITY``: LiDAR -> SPI detector, RGB -> BiSeNet segmentation,
thermal -> GEM fusion with a clean RGB frame beside it). Faults (``glassbox.faults``) are injected as numpy
transforms. The method:

1. *Calibrate* on nominal frames of some streets (``calib_seeds``): per-layer statistics, exactly what
   ``glassbox profile`` records on a robot, and the same robust centre and spread for every baseline signal.
2. *Nominal test*: consecutive frames at the sensor rate on other streets (``test_seeds``). Their scores are the
   negatives of every ROC; the monitor (shipped thresholds and smoothing) runs over them to count false alarms.
3. *Faults*: every ``fault_every``-th nominal test frame with the fault injected at each severity: the positives.
   The detection delay is measured on a stream of those frames, clean for the first half and faulty from the
   middle on: frames from the onset to the first WARN (None: not detected in the window).

Scores: the monitor's is the largest per-layer |z| of one frame (unsmoothed; the levels use the smoothed z).
Baselines are z-scores of one scalar each against the same calibration frames, |x - median| / robust std:
output-only uncertainty (mean top-3 detection score, or mean per-pixel predictive entropy of the segmentation)
and an input statistic (LiDAR point count; image brightness and contrast).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glassbox.faults import FAULTS, SENSORS, fault_sequence
from glassbox.monitor import EntropyMonitor, LayerReference, Level, MonitorConfig, layer_statistics

SENSOR_CAPABILITY = {"lidar": "lidar", "rgb": "segmentation", "thermal": "fusion"}
SEVERITIES = (0.33, 0.67, 1.0)
SIGNATURE_MIN_AUROC = 0.75      # a fault gets a signature only when the monitor sees it (mean AUROC over severities)


@dataclass(frozen=True)
class EvalConfig:
    """Sizes of the benchmark (the defaults: the full run of ``bench/bench_monitor.py``)."""

    sensors: tuple[str, ...] = SENSORS
    faults: tuple[str, ...] = tuple(FAULTS)
    severities: tuple[float, ...] = SEVERITIES
    calib_seeds: tuple[int, ...] = (100, 101, 102, 103, 104, 105)
    calib_frames_per_seed: int = 12
    calib_spacing_s: float = 0.5
    test_seeds: tuple[int, ...] = (200, 201, 202)
    test_frames_per_seed: int = 100
    rate_hz: float = 10.0               # nominal test frames are consecutive at this rate
    fault_every: int = 5
    camera_width: int = 320             # the resolution of the shipped camera models' references
    camera_height: int = 256
    lidar: str = "hdl64"
    models_dir: str = ""
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


# ---------------------------------------------------------------------------------------------- statistics
def auroc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half
    (the Mann-Whitney U statistic over n_pos * n_neg). NaN when either side is empty."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if not len(neg) or not len(pos):
        return float("nan")
    ranks = np.empty(len(neg) + len(pos))
    allv = np.concatenate([neg, pos])
    order = np.argsort(allv, kind="mergesort")
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):                     # mid-ranks for ties
        tied = allv == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    u = ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(neg) * len(pos)))


def roc_curve(negatives: Sequence[float], positives: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.array([0.0] + [float((neg >= t).mean()) for t in thresholds])
    tpr = np.array([0.0] + [float((pos >= t).mean()) for t in thresholds])
    return fpr, tpr


def detection_delay(levels: Sequence[int], onset: int) -> int | None:
    """Frames from ``onset`` to the first WARN or worse at or after it; None when there is none."""
    for i in range(onset, len(levels)):
        if levels[i] in (Level.WARN, Level.ERROR):
            return i - onset
    return None


def alarm_events(levels: Sequence[int]) -> int:
    """Number of times the level rises from OK to WARN or ERROR (an alarm raised; staying up counts once)."""
    raised, previous = 0, Level.OK
    for lv in levels:
        if lv in (Level.WARN, Level.ERROR) and previous == Level.OK:
            raised += 1
        previous = Level(lv)
    return raised


def reference_from(samples: np.ndarray, layers: Sequence[str]) -> dict[str, LayerReference]:
    """Per-layer references (mean, std) from nominal samples (frames, layers): what ``glassbox profile`` records."""
    return {name: LayerReference(st["mean"], st["std"]) for name, st in zip(layers, layer_statistics(samples))}


def z_matrix(samples: np.ndarray, layers: Sequence[str], refs: dict[str, LayerReference],
             min_std: float = 1e-3) -> np.ndarray:
    """Unsmoothed per-layer z-scores (frames, layers) against ``refs``."""
    mean = np.array([refs[n].mean for n in layers])
    std = np.maximum(np.array([refs[n].std for n in layers]), min_std)
    return (np.asarray(samples, np.float64) - mean) / std


def robust_z(values: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """|x - median| / robust std (1.4826 MAD, floored at 1e-9 + 1 % of |median|) of a baseline signal."""
    med = float(np.median(calibration))
    spread = 1.4826 * float(np.median(np.abs(calibration - med)))
    return np.abs(np.asarray(values, np.float64) - med) / max(spread, 1e-9 + 0.01 * abs(med))


def monitor_levels(samples: np.ndarray, layers: Sequence[str], refs: dict[str, LayerReference],
                   cfg: MonitorConfig, model: str = "m") -> list[int]:
    """The monitor's level after each frame of a stream (frames, layers)."""
    mon = EntropyMonitor({model: refs}, cfg)
    return [int(mon.update(model, layers, row, i).level) for i, row in enumerate(samples)]


def signatures_from(z_by_fault: dict[str, np.ndarray], layers: Sequence[str]) -> dict[str, dict[str, float]]:
    """Fault -> layer -> mean z of that fault's frames (the fault signatures the monitor names)."""
    return {f: {n: round(float(v), 3) for n, v in zip(layers, z.mean(axis=0))} for f, z in z_by_fault.items()}


# ------------------------------------------------------------------------------------------ frames and models
def render_frames(sensor: str, seed: int, times: Sequence[float], cfg: EvalConfig) -> list[Any]:
    """Daylight frames of one street: LiDAR (points, ring); RGB images; thermal (RGB, thermal16) pairs."""
    from glassbox.sim import (SceneConfig, lidar_preset, make_scene, render_cameras, render_thermal, rgb_camera,
                              scan_lidar, thermal_camera)
    scene = make_scene(seed, SceneConfig())
    rgb_cam = rgb_camera(width=cfg.camera_width, height=cfg.camera_height)
    th_cam = thermal_camera(width=cfg.camera_width, height=cfg.camera_height)
    lidar = lidar_preset(cfg.lidar)
    frames = []
    for i, t in enumerate(times):
        pose, noise = scene.ego_pose(t), seed * 10_000 + i
        if sensor == "lidar":
            s = scan_lidar(scene, lidar, pose, noise, t=t)
            frames.append((s.points, s.ring))
            continue
        rgb = render_cameras(scene, rgb_cam, None, pose, "day", noise, t=t).rgb
        frames.append(rgb if sensor == "rgb" else
                      (rgb, render_thermal(scene, th_cam, pose, "day", noise, t=t).thermal16))
    return frames


def faulty_frames(sensor: str, frames: Sequence[Any], fault: str, severity: float, seed: int = 0) -> list[Any]:
    """``frames`` with ``fault`` injected (thermal pairs: into the thermal image only)."""
    if sensor != "thermal":
        return fault_sequence(frames, fault, severity, seed)
    thermal = fault_sequence([th for _, th in frames], fault, severity, seed)
    return [(rgb, th) for (rgb, _), th in zip(frames, thermal)]


def _top_score(scores: np.ndarray, k: int = 3) -> float:
    top = np.sort(np.asarray(scores, np.float64))[::-1][:k]
    return float(np.pad(top, (0, k - len(top))).mean())


def _grey(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) if img.ndim == 3 else img.astype(np.float64)


class SensorModel:
    """The shipped pipeline watching one sensor; ``run(frames)`` -> (entropy (n, L), baseline signals)."""

    def __init__(self, sensor: str, cfg: EvalConfig):
        from glassbox.stages.build import build_pipeline, card_path_for
        self.sensor = sensor
        cap = SENSOR_CAPABILITY[sensor]
        self.pipeline, self.card = build_pipeline(cap, card_path_for(cap, models_dir=cfg.models_dir or None))
        self.layers: list[str] = []

    def _one(self, frame: Any) -> tuple[np.ndarray, dict[str, float]]:
        if self.sensor == "lidar":
            res = self.pipeline(*frame)
            base = {"output_top_score": _top_score(res.detections.scores), "input_point_count": float(len(frame[0]))}
        elif self.sensor == "rgb":
            res = self.pipeline(frame)
            g = _grey(frame)
            base = {"output_entropy": float(res.uncertainty.mean()), "input_brightness": float(g.mean()),
                    "input_contrast": float(g.std())}
        else:
            res = self.pipeline(*frame)
            t = frame[1].astype(np.float64)
            base = {"output_top_score": _top_score(res.scores), "input_brightness": float(t.mean()),
                    "input_contrast": float(t.std())}
        self.layers = list(res.entropy.layer_names)
        return np.asarray(res.entropy.entropy_nats, np.float64), base

    def run(self, frames: Sequence[Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rows, bases = zip(*(self._one(f) for f in frames))
        return np.stack(rows), {k: np.array([b[k] for b in bases]) for k in bases[0]}


# ------------------------------------------------------------------------------------------------ the benchmark
def _times(n: int, spacing_s: float) -> list[float]:
    return [1.0 + i * spacing_s for i in range(n)]


def _scores(z: np.ndarray, bases: dict[str, np.ndarray], calib: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {"monitor": np.max(np.abs(z), axis=1)}
    out.update({k: robust_z(v, calib[k]) for k, v in bases.items()})
    return out


def _roc_points(neg: np.ndarray, pos: np.ndarray, keep: int = 40) -> list[list[float]]:
    fpr, tpr = roc_curve(neg, pos)
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(keep, len(fpr))).round().astype(int))
    return [[round(float(a), 4) for a in fpr[idx]], [round(float(b), 4) for b in tpr[idx]]]


def _false_alarms(streams: list[np.ndarray], layers: list[str], refs: dict, cfg: EvalConfig) -> dict[str, Any]:
    levels = [monitor_levels(e, layers, refs, cfg.monitor) for e in streams]
    frames = sum(len(lv) for lv in levels)
    hours = frames / cfg.rate_hz / 3600.0
    events = sum(alarm_events(lv) for lv in levels)
    return {"events": events, "frames": frames, "hours": round(hours, 5), "per_hour": round(events / hours, 2),
            "warn_frame_share": round(float(np.mean([v != Level.OK for lv in levels for v in lv])), 4),
            "per_hour_upper95": round(max(events, 3.0) / hours, 1) if events == 0 else None}


def _held_out_accuracy(z_by_fault: dict[str, tuple[np.ndarray, np.ndarray]], layers: list[str],
                       warn_z: float) -> float | None:
    """Signatures from the faulty frames of the first test street (``z_by_fault``: fault -> (z, street of each
    row)), then the share of the alarmed (max |z| >= warn_z) faulty frames of the other streets whose nearest
    signature is their own fault; None with a single street."""
    from glassbox.monitor import nearest_signature
    first = {f: street == street[0] for f, (_, street) in z_by_fault.items()}
    if all(m.all() for m in first.values()):
        return None
    sigs = signatures_from({f: z[first[f]] for f, (z, _) in z_by_fault.items()}, layers)
    hits = [nearest_signature(dict(zip(layers, row)), sigs)[0] == f
            for f, (z, _) in z_by_fault.items() for row in z[~first[f]] if np.abs(row).max() >= warn_z]
    return round(float(np.mean(hits)), 4) if hits else None


def evaluate_sensor(sensor: str, cfg: EvalConfig = EvalConfig(), log=lambda msg: None) -> dict[str, Any]:
    """The benchmark of one sensor's faults (see the module docstring); a JSON-ready dict."""
    model = SensorModel(sensor, cfg)
    calib = [f for s in cfg.calib_seeds for f in
             render_frames(sensor, s, _times(cfg.calib_frames_per_seed, cfg.calib_spacing_s), cfg)]
    e_cal, b_cal = model.run(calib)
    layers, refs = model.layers, reference_from(e_cal, model.layers)
    tests = [render_frames(sensor, s, _times(cfg.test_frames_per_seed, 1.0 / cfg.rate_hz), cfg) for s in cfg.test_seeds]
    runs = [model.run(frames) for frames in tests]
    e_nom = np.concatenate([e for e, _ in runs])
    neg = _scores(z_matrix(e_nom, layers, refs, cfg.monitor.min_std_nats),
                  {k: np.concatenate([b[k] for _, b in runs]) for k in b_cal}, b_cal)
    log(f"{sensor}: {len(calib)} calibration and {len(e_nom)} nominal frames")
    sub = [f for frames in tests for f in frames[::cfg.fault_every]]
    e_sub = np.concatenate([e[::cfg.fault_every] for e, _ in runs])
    seed_of = np.concatenate([np.full(len(frames[::cfg.fault_every]), s) for s, frames in zip(cfg.test_seeds, tests)])
    onset = len(sub) // 2
    faults, z_by_fault = {}, {}
    for name in (f for f in cfg.faults if FAULTS[f].sensor == sensor):
        per_sev, zs = {}, []
        for sev in ((1.0,) if FAULTS[name].temporal else cfg.severities):
            e_f, b_f = model.run(faulty_frames(sensor, sub, name, sev, seed=7))
            z = z_matrix(e_f, layers, refs, cfg.monitor.min_std_nats)
            pos = _scores(z, b_f, b_cal)
            levels = monitor_levels(np.concatenate([e_sub[:onset], e_f[onset:]]), layers, refs, cfg.monitor)
            per_sev[str(sev)] = {"auroc": {k: round(auroc(neg[k], pos[k]), 4) for k in pos},
                                 "delay_frames": detection_delay(levels, onset),
                                 "alarm_before_onset": bool(levels[onset - 1] != Level.OK),
                                 "roc": {k: _roc_points(neg[k], pos[k]) for k in pos}}
            zs.append(z)
            log(f"  {name} @ {sev}: AUROC monitor {per_sev[str(sev)]['auroc']['monitor']:.3f}, "
                f"delay {per_sev[str(sev)]['delay_frames']}")
        faults[name] = {"sensor": sensor, "description": FAULTS[name].description, "severities": per_sev}
        if np.mean([v["auroc"]["monitor"] for v in per_sev.values()]) >= SIGNATURE_MIN_AUROC:
            z_by_fault[name] = (np.concatenate(zs), np.tile(seed_of, len(zs)))
    return {"model": model.card.name, "card_sha256": model.card.sha256, "layers": layers,
            "calibration_frames": len(calib), "nominal_frames": int(len(e_nom)), "fault_frames": len(sub),
            "baselines": sorted(b_cal), "reference": {n: [round(r.mean, 3), round(r.std, 3)] for n, r in refs.items()},
            "false_alarms": _false_alarms([e for e, _ in runs], layers, refs, cfg), "faults": faults,
            "signatures": signatures_from({f: z for f, (z, _) in z_by_fault.items()}, layers),
            "signature_accuracy": _held_out_accuracy(z_by_fault, layers, cfg.monitor.warn_z)}
