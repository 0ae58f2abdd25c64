"""Offline replay of a ROS 2 bag through the perception stages, with metrics against ground truth.

``replay(bag, out_bag, cfg)`` reads any ROS 2 bag rosbags can open (mcap or sqlite3, Humble to Kilted), finds the
sensor topics by type and content (or takes them from a topic map, see ``glassbox.bag.topics``), and routes every
message by its role to each configured capability that consumes that role (``glassbox.capabilities``), calling
the very ``Stage.feed`` the nodes call, with the bag's receive time as the clock: decoding, validation and
rejection reasons, RGB-thermal pairing and the sensor-timeout fallback are the nodes' own; the cameras' CameraInfo
topics (when the bag has them beside the image topics) go to the stages as the nodes' camera_info subscriptions
do. It writes all output topics to an mcap bag with the input stamps (a stage's latched topics, e.g.
``label_info``, once, before its first output), feeds the entropy profiles to the entropy monitor (its states go to
``/diagnostics`` in the output bag) and, where the bag holds ground truth, computes each capability's metrics per
lighting segment (``glassbox.bag.metrics``). Rejections are counted as ``<capability>:<reason>``.

Whatever happens to the input, the output bag is closed properly: a truncated or corrupt bag gives a
:class:`ReplayError` naming the problem *after* everything read so far was processed and written.
"""
from __future__ import annotations

import inspect
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glassbox import capabilities as registry
from glassbox import msg as gm
from glassbox.bag.metrics import compute_metrics
from glassbox.bag.topics import ROLE_TYPES, ROLES, ReplayError, discover_topics  # noqa: F401  (public here)
from glassbox.bag.typestore import make_typestore
from glassbox.monitor import EntropyMonitor, MonitorConfig, load_references
from glassbox.stages.build import build_pipeline, card_path_for
from glassbox.sync import SyncConfig

log = logging.getLogger(__name__)

#: (capability, role) -> the output ("capability/suffix") that feeds it instead of the bag when
#: ``refine_before_segmentation`` is set and that capability runs, as on the robot (segmentation remapped to the
#: refiner's output)
REFINED_INPUTS = {("segmentation", "rgb"): "refiner/image_refined"}


@dataclass(frozen=True)
class ReplayConfig:
    """What to run and how. Card paths default to the shipped models (``GLASSBOX_MODELS`` or ``models/``)."""

    capabilities: tuple[str, ...] = registry.names()
    models_dir: str = ""
    lidar_card: str = ""
    refiner_card: str = ""
    segmentation_card: str = ""
    fusion_card: str = ""
    cards: dict[str, str] = field(default_factory=dict)   # capability -> card; wins over the *_card fields
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
    sensor_timeout_s: float = 0.5   # bag time after which a silent stream counts as absent (the fusion node's)
    reference_profile: str = ""     # a profile from `glassbox profile`: the monitor holds it instead of the cards'

    def __post_init__(self) -> None:
        known = registry.names()
        unknown = [c for c in self.capabilities if c not in known]
        if unknown:
            raise ValueError(f"unknown capability '{unknown[0]}' (known: {', '.join(known)})")


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
    frames_gt: dict[str, dict[int, Any]] = field(default_factory=lambda: defaultdict(dict))  # role -> stamp -> msg


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
    factory = gm.RosbagsFactory(typestore)
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
        run = _Run(cfg, result, writer, monitor, factory, stages, _routes(stages, cfg), keep_samples)
        try:
            _read(reader, roles, run, progress)
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


def _build_stages(cfg: ReplayConfig, roles: dict[str, str], factory: gm.MessageFactory,
                  result: ReplayResult, homography: tuple[float, ...] | None = None) -> tuple[dict[str, Any], dict]:
    """The stage of every configured capability that finds at least one of its inputs in the bag, built like
    its node's (same card, same stage class), and the cards' reference entropy profiles."""
    stages, cards = {}, []
    for cap in registry.all_capabilities():
        if cap.name not in cfg.capabilities:
            continue
        if not any(r in roles for r in cap.roles):
            result.warnings.append(f"{cap.name}: skipped, the bag has no {cap.roles[0]} topic")
            continue
        card = card_path_for(cap.name, card_setting(cfg, cap.name), cfg.models_dir or None)
        extra = {"homography_thermal_to_rgb": homography} if homography and "thermal" in cap.roles else {}
        pipeline, _ = build_pipeline(cap.name, card, backend=cfg.backend, providers=cfg.providers,
                                     threads=cfg.threads, entropy_every_n=cfg.entropy_every_n, **extra)
        stages[cap.name] = _make_stage(cap.load_stage(), pipeline, factory, cfg)
        cards.append(card)
    if not stages:
        raise ReplayError("nothing to replay: none of the configured capabilities found its input topics "
                          f"(topics found: {roles or 'none'})")
    references = load_references([*cards, *([cfg.reference_profile] if cfg.reference_profile else [])],
                                 allow_missing=True)
    from glassbox.models.card import load_card
    for cap, card in zip(stages, cards):
        if load_card(card).name not in references:
            result.warnings.append(f"{cap}: model card {card} has no reference entropy profile; not monitored")
    return stages, references


def _make_stage(cls: type, pipeline: Any, factory: gm.MessageFactory, cfg: ReplayConfig) -> Any:
    """``cls(pipeline, factory, ...)`` with the replay settings its constructor takes (pairing, sensor timeout)."""
    offered = {"sync": cfg.sync, "sensor_timeout_s": cfg.sensor_timeout_s}
    accepted = inspect.signature(cls).parameters
    return cls(pipeline, factory, **{k: v for k, v in offered.items() if k in accepted})


def _routes(stages: dict[str, Any], cfg: ReplayConfig) -> dict[str, list[tuple[str, str]]]:
    """Source (a bag role, or a stage output "capability/suffix") -> the (capability, role) inputs it feeds.
    A camera input of a stage that takes camera info is also fed the camera_info of its source: the bag's
    ``<role>_info``, or the ``<capability>/camera_info`` beside a chained output."""
    routes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name in stages:
        for stream in registry.get(name).inputs:
            role = stream.role
            chained = REFINED_INPUTS.get((name, role)) if cfg.refine_before_segmentation else None
            source = chained if chained and chained.split("/")[0] in stages else role
            routes[source].append((name, role))
            if stream.is_camera and hasattr(stages[name], "camera_info"):
                info = f"{source.split('/')[0]}/camera_info" if "/" in source else f"{role}_info"
                routes[info].append((name, role))
    return dict(routes)


@dataclass
class _Run:
    """The state of one replay: where outputs go and what is recorded."""

    cfg: ReplayConfig
    result: ReplayResult
    writer: _Writer
    monitor: EntropyMonitor
    factory: gm.MessageFactory
    stages: dict[str, Any]
    routes: dict[str, list[tuple[str, str]]]
    keep_samples: int
    lighting: str = ""
    lighting_seen: bool = False
    latched_written: set[str] = field(default_factory=set)


def _read(reader: Any, roles: dict[str, str], run: _Run, progress: Callable[[int, int], None] | None) -> None:
    """Every message of the role topics, in log order, into :func:`_dispatch`; a damaged file ends the loop with
    ``result.error`` set."""
    topic_role = {t: r for r, t in roles.items()}
    conns = [c for c in reader.connections if c.topic in topic_role]
    total = sum(c.msgcount for c in conns)
    done = 0
    messages = iter(reader.messages(connections=conns))
    while True:
        try:
            conn, t_log, raw = next(messages)
        except StopIteration:
            break
        except Exception as exc:  # whatever the storage layer raises for a damaged file (zstd, struct, sqlite...)
            run.result.error = (f"bag {run.result.bag} is truncated or corrupt after {done} of {total} messages "
                                f"({type(exc).__name__}: {exc}); the output bag holds everything before that point")
            break
        done += 1
        if progress is not None:
            progress(done, total)
        role = topic_role[conn.topic]
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception as exc:  # a message rosbags cannot decode: count it, keep going
            for cap in [c for c, _ in run.routes.get(role, ())] or [role]:
                run.result.rejected[f"{cap}:undecodable"] += 1
            log.warning("cannot deserialise a %s message on %s: %s", conn.msgtype, conn.topic, exc)
            continue
        _dispatch(run, role, msg, int(t_log))


def _dispatch(run: _Run, role: str, msg: Any, t_log: int) -> None:
    """A lighting label, a ground-truth message, or a sensor message for every stage that takes its role."""
    if role == "lighting":
        if not run.lighting_seen:
            _backfill_lighting(run.result, str(msg.data))   # frames seen before the first label
        run.lighting, run.lighting_seen = str(msg.data), True
    elif role.startswith("gt_"):
        run.result.frames_gt[role][gm.stamp_to_ns(msg.header.stamp)] = msg
    else:
        _route(run, role, msg, t_log)


def _route(run: _Run, source: str, msg: Any, t_log: int) -> None:
    """Feed ``msg`` to every (capability, role) that ``source`` feeds, the way a node would (a camera_info source,
    ``*_info``, to the stage's ``camera_info``); chained outputs (see ``REFINED_INPUTS``) go on to their
    consumers, camera_info first."""
    for cap, role in run.routes.get(source, ()):
        try:
            if source.endswith("_info"):
                run.stages[cap].camera_info(role, msg)
                continue
            out = run.stages[cap].feed(role, msg, t_log)
        except gm.ConversionError as exc:
            run.result.rejected[f"{cap}:{exc.reason}"] += 1
            log.warning("%s rejected a %s message at %d: %s", cap, source, t_log, exc)
            continue
        if out is None:
            continue
        _emit(run, cap, out, t_log)
        for suffix, out_msg in sorted(out.messages.items(), key=lambda kv: not kv[0].endswith("_info")):
            if f"{cap}/{suffix}" in run.routes:
                _route(run, f"{cap}/{suffix}", out_msg, t_log)


def _emit(run: _Run, cap: str, out: Any, t_log: int) -> None:
    """Write a stage's outputs, monitor its entropy profile, record the frame and keep a sample."""
    ns = f'{run.cfg.output_namespace.rstrip("/")}/{registry.get(cap).namespace}'   # the node's namespace
    result = run.result
    stage = run.stages[cap]
    if cap not in run.latched_written:
        run.latched_written.add(cap)
        for suffix, msg in stage.latched_messages(out.stamp_ns).items():
            run.writer.write(f"{ns}/{suffix}", stage.latched[suffix], t_log, msg)
    for suffix, msg in out.messages.items():
        run.writer.write(f"{ns}/{suffix}", run.stages[cap].outputs[suffix], t_log, msg)
    prof = getattr(out.result, "entropy", None)
    if prof is not None:
        result.entropy[prof.model_name].append(
            (t_log, {n: float(h) for n, h in zip(prof.layer_names, prof.entropy_nats)}))
        health = run.monitor.update(prof.model_name, prof.layer_names, prof.entropy_nats, t_log, t_log * 1e-9)
        result.monitor[prof.model_name].append((t_log, int(health.level), run.lighting))
        run.writer.write("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", t_log,
                         _diagnostics_msg(run.factory, health, t_log))
    result.frames.append({"capability": cap, "stamp_ns": out.stamp_ns, "lighting": run.lighting,
                          "timings_ms": dict(getattr(out.result, "timings_ms", {})), **out.frame})
    if out.sample:
        _keep(result, cap, run.keep_samples, run.lighting, {"stamp_ns": out.stamp_ns, **out.sample})


def _diagnostics_msg(factory: gm.MessageFactory, health: Any, stamp_ns: int) -> Any:
    status = gm.make_diagnostic_status(factory, int(health.level), f"glassbox/entropy/{health.model_name}",
                                       health.message, "glassbox_replay",
                                       {f"z/{k}": f"{z:+.3f}" for k, z in health.z_scores.items()})
    return gm.make_diagnostic_array(factory, [status], stamp_ns)


def _backfill_lighting(result: ReplayResult, label: str) -> None:
    for f in result.frames:
        f["lighting"] = f["lighting"] or label
    for model, states in result.monitor.items():
        result.monitor[model] = [(t, lv, seg or label) for t, lv, seg in states]
    for samples in result.samples.values():
        for s in samples:
            s["lighting"] = s["lighting"] or label


def _keep(result: ReplayResult, cap: str, keep: int, lighting: str, sample: dict) -> None:
    """Keep a few frames per capability and lighting segment for the report's overlays."""
    kept = [s for s in result.samples[cap] if s["lighting"] == lighting]
    if len(kept) < max(1, keep // 2) and len(result.samples[cap]) < keep * 3:
        result.samples[cap].append({"lighting": lighting, **sample})


def card_setting(cfg: ReplayConfig, capability: str) -> str:
    """The card configured for ``capability``: ``cards[capability]``, else its ``<capability>_card`` field."""
    return cfg.cards.get(capability) or getattr(cfg, f"{capability}_card", "")


def write_metrics(result: ReplayResult, path: str | Path) -> Path:
    path = Path(path)
    payload = {"bag": result.bag, "out_bag": result.out_bag, "topics": result.topics, "warnings": result.warnings,
               "messages_written": result.messages_written, "wall_time_s": round(result.wall_time_s, 2),
               "metrics": result.metrics}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def now() -> float:
    return time.perf_counter()
