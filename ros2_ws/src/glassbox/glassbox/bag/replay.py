"""Offline replay of a ROS 2 bag through the perception stages, with metrics against ground truth.

``replay(bag, out_bag, cfg)`` reads any ROS 2 bag rosbags can open (mcap or sqlite3, Humble to Kilted), finds the
sensor topics by type and content (or takes them from a topic map), runs every configured stage on every frame
(RGB-thermal pairs by the same approximate-time synchroniser as the fusion node), writes all output topics to an
mcap bag with the input stamps, feeds the entropy profiles to the entropy monitor (its states go to
``/diagnostics`` in the output bag) and, where the bag holds ground truth, computes metrics per lighting segment.
The stages are the nodes' own (``glassbox.stages``): what is evaluated here is what runs on the robot.

Whatever happens to the input, the output bag is closed properly: a truncated or corrupt bag gives a
:class:`ReplayError` naming the problem *after* everything read so far was processed and written.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glassbox import msgcodec as mc
from glassbox.bag.typestore import make_typestore
from glassbox.classes import BINARY_CLASSES, DETECTION_CLASSES, DETECTION_ID, TRAVERSABLE_SEMANTIC_IDS
from glassbox.monitor import EntropyMonitor, Level, MonitorConfig, load_references
from glassbox.capabilities import names as _capability_names
from glassbox.stages.build import build_pipeline, build_stage, card_path_for

CAPABILITIES = _capability_names()
from glassbox.sync import ApproximateTimeSync, SyncConfig

log = logging.getLogger(__name__)

ROLE_TYPES = {"lidar": "sensor_msgs/msg/PointCloud2", "rgb": "sensor_msgs/msg/Image", "thermal": "sensor_msgs/msg/Image",
              "gt_lidar": "vision_msgs/msg/Detection3DArray", "gt_rgb": "vision_msgs/msg/Detection2DArray",
              "gt_semantic": "sensor_msgs/msg/Image", "lighting": "std_msgs/msg/String"}
ROLES = tuple(ROLE_TYPES)
COLOR_ENCODINGS = {"rgb8", "bgr8", "rgba8", "bgra8", "8UC3"}
THERMAL_ENCODINGS = {"mono16", "16UC1"}


class ReplayError(RuntimeError):
    """The bag cannot be (fully) replayed; the message says why. Output written so far stays valid, and
    ``result`` holds what was processed (None when nothing could be)."""

    def __init__(self, message: str, result: "ReplayResult | None" = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ReplayConfig:
    """What to run and how. Card paths default to the shipped models (``GLASSBOX_MODELS`` or ``models/``)."""

    capabilities: tuple[str, ...] = CAPABILITIES
    models_dir: str = ""
    lidar_card: str = ""
    refiner_card: str = ""
    segmentation_card: str = ""
    fusion_card: str = ""
    backend: str = "onnxruntime"
    providers: tuple[str, ...] = ("cpu",)
    threads: int = 0
    refine_before_segmentation: bool = True
    entropy_every_n: int = 1
    sync: SyncConfig = field(default_factory=SyncConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    output_namespace: str = "/glassbox"
    calibration: str = ""           # YAML with homography_thermal_to_rgb; default: <bag>.calib.yaml if present
    min_gt_points: int = 0          # LiDAR ground truth boxes hit by fewer points are ignored in AP (0: none)

    def __post_init__(self) -> None:
        unknown = [c for c in self.capabilities if c not in CAPABILITIES]
        if unknown:
            raise ValueError(f"unknown capability '{unknown[0]}' (known: {', '.join(CAPABILITIES)})")


@dataclass
class ReplayResult:
    """Everything the report needs. ``frames`` holds one record per processed input frame."""

    bag: str
    out_bag: str
    topics: dict[str, str]
    frames: list[dict] = field(default_factory=list)
    entropy: dict[str, list[tuple[int, dict[str, float]]]] = field(default_factory=lambda: defaultdict(list))
    monitor: dict[str, list[tuple[int, int, str]]] = field(default_factory=lambda: defaultdict(list))
    references: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    warnings: list[str] = field(default_factory=list)
    messages_written: int = 0
    wall_time_s: float = 0.0
    error: str = ""
    samples: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # frames kept for the report


# ------------------------------------------------------------------------------------------- topic discovery
def _first_message(reader: Any, conn: Any) -> Any | None:
    for c, _, raw in reader.messages(connections=[conn]):
        return reader.deserialize(raw, c.msgtype)
    return None


def discover_topics(reader: Any, topic_map: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Role -> topic. Mapped roles are checked; the rest are found by message type and content."""
    topic_map = dict(topic_map or {})
    notes: list[str] = []
    unknown = [r for r in topic_map if r not in ROLES and r != "camera"]
    if unknown:
        raise ReplayError(f"unknown role '{unknown[0]}' in --map (known: {', '.join(ROLES)})")
    if "camera" in topic_map:                      # alias: the camera used by refiner / segmentation / fusion
        topic_map.setdefault("rgb", topic_map.pop("camera"))
    by_topic = {c.topic: c for c in reader.connections}
    counts = {c.topic: c.msgcount for c in reader.connections}
    roles: dict[str, str] = {}
    for role, topic in topic_map.items():
        if topic not in by_topic:
            raise ReplayError(f"--map {role}={topic}: the bag has no topic '{topic}' "
                              f"(topics: {', '.join(sorted(by_topic))})")
        if by_topic[topic].msgtype != ROLE_TYPES[role]:
            raise ReplayError(f"--map {role}={topic}: the topic carries {by_topic[topic].msgtype}, a {role} topic "
                              f"must carry {ROLE_TYPES[role]}")
        roles[role] = topic

    def candidates(msgtype: str) -> list[Any]:
        return sorted((c for c in reader.connections if c.msgtype == msgtype and c.topic not in roles.values()),
                      key=lambda c: ("ground_truth" in c.topic, -c.msgcount, c.topic))

    if "lidar" not in roles:
        for c in candidates("sensor_msgs/msg/PointCloud2"):
            if "ground_truth" not in c.topic and "label" not in c.topic:
                roles["lidar"] = c.topic
                break
    for c in candidates("sensor_msgs/msg/Image"):
        if "ground_truth" in c.topic:
            if "gt_semantic" not in roles and "semantic" in c.topic:
                roles["gt_semantic"] = c.topic
            continue
        if "rgb" in roles and "thermal" in roles:
            break
        first = _first_message(reader, c)
        enc = str(first.encoding) if first is not None else ""
        if enc in COLOR_ENCODINGS and "rgb" not in roles:
            roles["rgb"] = c.topic
        elif enc in THERMAL_ENCODINGS and "thermal" not in roles:
            roles["thermal"] = c.topic
    for role, msgtype, key in (("gt_lidar", "vision_msgs/msg/Detection3DArray", ""),
                               ("gt_rgb", "vision_msgs/msg/Detection2DArray", "rgb"),
                               ("lighting", "std_msgs/msg/String", "lighting")):
        if role not in roles:
            found = [c for c in candidates(msgtype) if key in c.topic]
            if found:
                roles[role] = found[0].topic
    for role, topic in roles.items():
        if counts.get(topic, 0) == 0:
            notes.append(f"topic {topic} ({role}) has no messages")
    return roles, notes


# --------------------------------------------------------------------------------------------- the replay
class _Writer:
    """An mcap output bag whose connections are created on first use; always closed."""

    def __init__(self, path: Path, typestore: Any):
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.typestore = typestore
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns: dict[str, Any] = {}
        self.count = 0

    def write(self, topic: str, msgtype: str, t_ns: int, msg: Any) -> None:
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.typestore)
        self.writer.write(self.conns[topic], int(t_ns), self.typestore.serialize_cdr(msg, msgtype))
        self.count += 1

    def close(self) -> None:
        self.writer.close()


def _diagnostics_msg(factory: mc.MessageFactory, states: list, stamp_ns: int) -> Any:
    statuses = [factory.make("diagnostic_msgs/msg/DiagnosticStatus", level=int(h.level),
                             name=f"glassbox/entropy/{h.model_name}", message=h.message, hardware_id="glassbox_replay",
                             values=[factory.make("diagnostic_msgs/msg/KeyValue", key=f"z/{k}", value=f"{z:+.3f}")
                                     for k, z in h.z_scores.items()]) for h in states]
    return factory.make("diagnostic_msgs/msg/DiagnosticArray", header=mc.make_header(factory, stamp_ns, ""),
                        status=statuses)


def replay(bag: str | Path, out_bag: str | Path, cfg: ReplayConfig = ReplayConfig(),
           topic_map: Mapping[str, str] | None = None, overwrite: bool = False, keep_samples: int = 4,
           progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Replay ``bag`` into ``out_bag`` (see the module docstring). Raises :class:`ReplayError` on a bad bag."""
    from rosbags.highlevel import AnyReader

    bag, out_bag = Path(bag), Path(out_bag)
    if not bag.exists():
        raise ReplayError(f"bag not found: {bag}")
    if out_bag.exists():
        if not overwrite:
            raise ReplayError(f"output {out_bag} exists (pass overwrite=True / --overwrite to replace it)")
        import shutil
        shutil.rmtree(out_bag) if out_bag.is_dir() else out_bag.unlink()
    typestore = make_typestore()
    factory = mc.RosbagsFactory(typestore)
    try:
        reader = AnyReader([bag], default_typestore=typestore)
        reader.open()
    except Exception as exc:  # rosbags raises many types for unreadable files; all mean the same to the user
        _Writer(out_bag, typestore).close()          # a valid, empty output bag: nothing could be processed
        hint = " (truncated: the recording was interrupted?)" if "end magic" in str(exc) else ""
        raise ReplayError(f"cannot open bag {bag}: {type(exc).__name__}: {exc}{hint}; wrote an empty output bag "
                          f"{out_bag}", ReplayResult(str(bag), str(out_bag), {}, error=str(exc))) from exc
    try:
        roles, notes = discover_topics(reader, topic_map)
        result = ReplayResult(str(bag), str(out_bag), roles, warnings=list(notes))
        stages, references = _build_stages(cfg, roles, factory, result, _homography(bag, cfg, result))
        monitor = EntropyMonitor(references, cfg.monitor)
        result.references = {m: {k: (r.mean, r.std) for k, r in layers.items()} for m, layers in references.items()}
        writer = _Writer(out_bag, typestore)
        try:
            _run(reader, roles, stages, factory, writer, monitor, cfg, result, keep_samples, progress)
        finally:
            writer.close()
            result.messages_written = writer.count
    finally:
        reader.close()
    result.metrics = compute_metrics(result)
    if result.error:
        raise ReplayError(result.error, result)
    return result


def _homography(bag: Path, cfg: ReplayConfig, result: ReplayResult) -> tuple[float, ...] | None:
    """The thermal -> RGB homography of the recording: ``cfg.calibration`` or ``<bag>.calib.yaml`` (written by
    ``glassbox sim``); None when neither exists (the fusion model card's is used then)."""
    import yaml
    candidates = [Path(cfg.calibration)] if cfg.calibration else \
        [bag.with_suffix(".calib.yaml"), bag / f"{bag.name}.calib.yaml", bag.parent / f"{bag.name}.calib.yaml"]
    for path in candidates:
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            if "homography_thermal_to_rgb" not in data:
                raise ReplayError(f"{path}: no homography_thermal_to_rgb in the calibration file")
            h = np.asarray(data["homography_thermal_to_rgb"], np.float64).reshape(-1)
            if h.size != 9:
                raise ReplayError(f"{path}: homography_thermal_to_rgb needs 9 values, got {h.size}")
            return tuple(float(x) for x in h)
    if cfg.calibration:
        raise ReplayError(f"calibration file not found: {cfg.calibration}")
    return None


def _build_stages(cfg: ReplayConfig, roles: dict[str, str], factory: mc.MessageFactory,
                  result: ReplayResult, homography: tuple[float, ...] | None = None) -> tuple[dict[str, Any], dict]:
    needs = {"lidar": ("lidar",), "refiner": ("rgb",), "segmentation": ("rgb",), "fusion": ("rgb",)}
    stages, cards = {}, []
    for cap in cfg.capabilities:
        missing = [r for r in needs[cap] if r not in roles]
        if missing:
            result.warnings.append(f"{cap}: skipped, the bag has no {missing[0]} topic")
            continue
        card = card_path_for(cap, getattr(cfg, f"{cap}_card"), cfg.models_dir or None)
        extra = {"homography_thermal_to_rgb": homography} if cap == "fusion" and homography else {}
        pipeline, _ = build_pipeline(cap, card, backend=cfg.backend, providers=cfg.providers, threads=cfg.threads,
                                     entropy_every_n=cfg.entropy_every_n, **extra)
        stages[cap] = build_stage(cap, pipeline, factory)
        cards.append(card)
    if not stages:
        raise ReplayError("nothing to replay: none of the configured capabilities found its input topics "
                          f"(topics found: {roles or 'none'})")
    references = load_references(cards, allow_missing=True)
    for cap, card in zip(stages, cards):
        from glassbox.models.card import load_card
        if load_card(card).name not in references:
            result.warnings.append(f"{cap}: model card {card} has no reference entropy profile; not monitored")
    return stages, references


def _run(reader: Any, roles: dict[str, str], stages: dict[str, Any], factory: mc.MessageFactory, writer: _Writer,
         monitor: EntropyMonitor, cfg: ReplayConfig, result: ReplayResult, keep_samples: int,
         progress: Callable[[int, int], None] | None) -> None:
    from glassbox.stages.camera import decode_rgb, decode_thermal

    ns = cfg.output_namespace.rstrip("/")
    topic_role = {t: r for r, t in roles.items()}
    conns = [c for c in reader.connections if c.topic in topic_role]
    total = sum(c.msgcount for c in conns)
    sync = ApproximateTimeSync(cfg.sync)
    lighting = ""
    lighting_events: list[tuple[int, str]] = []
    gt: dict[str, dict[int, Any]] = defaultdict(dict)
    done = 0

    def emit(cap: str, out: Any, t_log: int) -> None:
        for suffix, msg in out.messages.items():
            writer.write(f"{ns}/{cap}/{suffix}", stages[cap].outputs[suffix], t_log, msg)
        prof = getattr(out.result, "entropy", None)
        if prof is not None:
            result.entropy[prof.model_name].append(
                (int(t_log), {n: float(h) for n, h in zip(prof.layer_names, prof.entropy_nats)}))
            health = monitor.update(prof.model_name, prof.layer_names, prof.entropy_nats, int(t_log),
                                    t_log * 1e-9)
            result.monitor[prof.model_name].append((int(t_log), int(health.level), lighting))
            writer.write("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", t_log,
                         _diagnostics_msg(factory, [health], t_log))

    def record(cap: str, stamp_ns: int, out: Any, extra: dict | None = None) -> dict:
        rec = {"capability": cap, "stamp_ns": stamp_ns, "lighting": lighting,
               "timings_ms": dict(getattr(out.result, "timings_ms", {})), **(extra or {})}
        result.frames.append(rec)
        return rec

    messages = iter(reader.messages(connections=conns))
    while True:
        try:
            conn, t_log, raw = next(messages)
        except StopIteration:
            break
        except Exception as exc:  # whatever the storage layer raises for a damaged file (zstd, struct, sqlite...)
            result.error = (f"bag {result.bag} is truncated or corrupt after {done} of {total} messages "
                            f"({type(exc).__name__}: {exc}); the output bag holds everything before that point")
            break
        done += 1
        if progress is not None:
            progress(done, total)
        role = topic_role[conn.topic]
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception as exc:  # a message rosbags cannot decode: count it, keep going
            result.rejected[f"{role}:undecodable"] += 1
            log.warning("cannot deserialise a %s message on %s: %s", conn.msgtype, conn.topic, exc)
            continue
        if role == "lighting":
            if not lighting_events:
                _backfill_lighting(result, str(msg.data))   # frames seen before the first label
            lighting = str(msg.data)
            lighting_events.append((int(t_log), lighting))
            continue
        if role.startswith("gt_"):
            gt[role][mc.stamp_to_ns(msg.header.stamp)] = msg
            continue
        stamp = mc.stamp_to_ns(msg.header.stamp)
        try:
            if role == "lidar" and "lidar" in stages:
                out = stages["lidar"](msg)
                emit("lidar", out, t_log)
                d = out.result.detections
                rec = record("lidar", stamp, out, {"num_detections": len(d)})
                rec["_pred"] = d
                _keep(result, "lidar", keep_samples, lighting, {"stamp_ns": stamp, "range": out.result.range_image.range,
                                                                "detections": d})
            elif role == "rgb":
                rgb = decode_rgb(msg)
                seg_input = rgb
                if "refiner" in stages:
                    out = stages["refiner"].run(rgb, msg.header, str(msg.encoding))
                    emit("refiner", out, t_log)
                    record("refiner", stamp, out)
                    if cfg.refine_before_segmentation:
                        seg_input = out.result.refined
                if "segmentation" in stages:
                    out = stages["segmentation"].run(seg_input, msg.header)
                    emit("segmentation", out, t_log)
                    rec = record("segmentation", stamp, out)
                    rec["_labels"] = out.result.labels
                    rec["_class_names"] = out.result.class_names
                    _keep(result, "segmentation", keep_samples, lighting,
                          {"stamp_ns": stamp, "rgb": rgb, "labels": out.result.labels,
                           "class_names": out.result.class_names})
                if "fusion" in stages:
                    if "thermal" in roles:
                        pair = sync.add(0, stamp, (msg, rgb, t_log))
                        if pair is not None:
                            _fuse(stages, pair.first, decode_thermal(pair.second[0]), pair, emit, record,
                                  result, keep_samples, lighting)
                    else:
                        out = stages["fusion"].run(rgb, None, msg.header, degraded=("thermal",))
                        emit("fusion", out, t_log)
                        rec = record("fusion", stamp, out, {"rgb_share": out.result.rgb_share})
                        rec["_pred"] = out.result
            elif role == "thermal" and "fusion" in stages:
                pair = sync.add(1, stamp, (msg, None, t_log))
                if pair is not None:
                    _fuse(stages, pair.first, decode_thermal(msg), pair, emit, record, result, keep_samples,
                          lighting)
        except mc.ConversionError as exc:
            result.rejected[f"{role}:{str(exc).split(' (')[0][:50]}"] += 1
            log.warning("rejected a %s message at %d: %s", role, stamp, exc)
    result.frames_gt = gt  # type: ignore[attr-defined]
    result.sync_dropped = list(sync.dropped)  # type: ignore[attr-defined]


def _backfill_lighting(result: ReplayResult, label: str) -> None:
    for f in result.frames:
        f["lighting"] = f["lighting"] or label
    for model, states in result.monitor.items():
        result.monitor[model] = [(t, lv, seg or label) for t, lv, seg in states]
    for samples in result.samples.values():
        for s in samples:
            s["lighting"] = s["lighting"] or label


def _fuse(stages, rgb_item, thermal, pair, emit, record, result, keep_samples, lighting) -> None:
    msg, rgb, t_log = rgb_item if rgb_item[1] is not None else pair.first
    skew = abs(pair.skew_ns) * 1e-9
    out = stages["fusion"].run(rgb, thermal, msg.header, sensor_age_s=(0.0, skew))
    emit("fusion", out, t_log)
    stamp = mc.stamp_to_ns(msg.header.stamp)
    rec = record("fusion", stamp, out, {"rgb_share": out.result.rgb_share, "skew_ms": skew * 1e3})
    rec["_pred"] = out.result
    _keep(result, "fusion", keep_samples, lighting, {"stamp_ns": stamp, "rgb": rgb, "thermal": thermal,
                                                     "result": out.result})


def _keep(result: ReplayResult, cap: str, keep: int, lighting: str, sample: dict) -> None:
    """Keep a few frames per capability and lighting segment for the report's overlays."""
    kept = [s for s in result.samples[cap] if s["lighting"] == lighting]
    if len(kept) < max(1, keep // 2) and len(result.samples[cap]) < keep * 3:
        result.samples[cap].append({"lighting": lighting, **sample})


# ---------------------------------------------------------------------------------------------- metrics
def compute_metrics(result: ReplayResult) -> dict[str, Any]:
    """Metrics per capability and lighting segment where the bag has ground truth (``all`` = every frame)."""
    from glassbox.metrics.detection2d import Detections2D as Det2D
    from glassbox.metrics.detection2d import GroundTruth2D, evaluate_detections_2d
    from glassbox.metrics.detection3d import evaluate_detections
    from glassbox.metrics.segmentation import SegmentationMeter

    gt = getattr(result, "frames_gt", {})
    metrics: dict[str, Any] = {}
    by_cap: dict[str, list[dict]] = defaultdict(list)
    for f in result.frames:
        by_cap[f["capability"]].append(f)

    def segments(frames: list[dict]) -> dict[str, list[dict]]:
        out = {"all": frames}
        for f in frames:
            if f["lighting"]:
                out.setdefault(f["lighting"], []).append(f)
        return out

    # LiDAR: BEV and 3D AP (R40) per class.
    frames = [f for f in by_cap.get("lidar", []) if f["stamp_ns"] in gt.get("gt_lidar", {})]
    if frames:
        metrics["lidar"] = {}
        for seg, fs in segments(frames).items():
            gts = [_gt_boxes3d(gt["gt_lidar"][f["stamp_ns"]]) for f in fs]
            m = evaluate_detections([f["_pred"] for f in fs], gts)
            metrics["lidar"][seg] = {k: (None if np.isnan(v) else round(float(v), 4)) for k, v in m.items()}
            metrics["lidar"][seg]["frames"] = len(fs)
    elif "lidar" in by_cap:
        metrics["lidar"] = "no ground truth in the bag"

    # Segmentation: mIoU against the semantic label images.
    frames = [f for f in by_cap.get("segmentation", []) if f["stamp_ns"] in gt.get("gt_semantic", {})]
    if frames:
        metrics["segmentation"] = {}
        for seg, fs in segments(frames).items():
            names = fs[0]["_class_names"]
            meter = SegmentationMeter(len(names))
            for f in fs:
                sem = mc.image_to_array(gt["gt_semantic"][f["stamp_ns"]])
                label = np.isin(sem, TRAVERSABLE_SEMANTIC_IDS).astype(np.uint8) if tuple(names) == BINARY_CLASSES \
                    else sem
                meter.update(f["_labels"], label)
            r = meter.result()
            metrics["segmentation"][seg] = {"miou": round(float(r["miou"]), 4),
                                            "pixel_accuracy": round(float(r["pixel_accuracy"]), 4),
                                            "iou": {n: (None if np.isnan(v) else round(float(v), 4))
                                                    for n, v in zip(names, r["iou"])}, "frames": len(fs)}
    elif "segmentation" in by_cap:
        metrics["segmentation"] = "no ground truth in the bag"

    # Fusion: COCO-style mAP against the RGB ground-truth boxes.
    frames = [f for f in by_cap.get("fusion", []) if f["stamp_ns"] in gt.get("gt_rgb", {})]
    if frames:
        metrics["fusion"] = {}
        for seg, fs in segments(frames).items():
            dets = [Det2D(f["_pred"].boxes, f["_pred"].scores, f["_pred"].classes) for f in fs]
            gts = []
            for f in fs:
                g = mc.detection2d_array_to_numpy(gt["gt_rgb"][f["stamp_ns"]])
                gts.append(GroundTruth2D(g.boxes_xyxy, np.array([DETECTION_ID.get(n, -1) for n in g.class_names])))
            m = evaluate_detections_2d(dets, gts, len(DETECTION_CLASSES))
            metrics["fusion"][seg] = {"map50": round(float(m["map50"]), 4), "map": round(float(m["map"]), 4),
                                      "ap50": {n: (None if np.isnan(v) else round(float(v), 4))
                                               for n, v in zip(DETECTION_CLASSES, m["ap50"])},
                                      "mean_rgb_share": round(float(np.mean([f["rgb_share"] for f in fs])), 4),
                                      "frames": len(fs)}
    elif "fusion" in by_cap:
        metrics["fusion"] = "no ground truth in the bag"

    # Monitor: share of profiles per level, per model and segment.
    mon: dict[str, Any] = {}
    for model, states in result.monitor.items():
        per_seg: dict[str, list[int]] = defaultdict(list)
        for _, level, seg in states:
            per_seg["all"].append(level)
            if seg:
                per_seg[seg].append(level)
        mon[model] = {seg: {lv.name: round(float(np.mean(np.asarray(levels) == int(lv))), 4)
                            for lv in (Level.OK, Level.WARN, Level.ERROR)} for seg, levels in per_seg.items()}
    if mon:
        metrics["monitor"] = mon
    # Latency per capability and stage.
    lat: dict[str, dict[str, float]] = {}
    for cap, fs in by_cap.items():
        keys = sorted({k for f in fs for k in f["timings_ms"]})
        lat[cap] = {k: round(float(np.mean([f["timings_ms"][k] for f in fs if k in f["timings_ms"]])), 3)
                    for k in keys}
    metrics["latency_ms"] = lat
    metrics["frames"] = {cap: len(fs) for cap, fs in by_cap.items()}
    metrics["rejected"] = dict(result.rejected)
    return metrics


def _gt_boxes3d(msg: Any) -> Any:
    from glassbox.lidar.decode import Detections3D
    g = mc.detection3d_array_to_numpy(msg)
    classes = np.array([DETECTION_ID.get(n, -1) for n in g.class_names], np.int64)
    return Detections3D(centers=g.centers.astype(np.float32), sizes=g.sizes.astype(np.float32),
                        yaw=g.yaw.astype(np.float32), classes=classes, scores=np.ones(len(classes), np.float32))


def write_metrics(result: ReplayResult, path: str | Path) -> Path:
    path = Path(path)
    payload = {"bag": result.bag, "out_bag": result.out_bag, "topics": result.topics, "warnings": result.warnings,
               "messages_written": result.messages_written, "wall_time_s": round(result.wall_time_s, 2),
               "metrics": result.metrics}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def now() -> float:
    return time.perf_counter()
