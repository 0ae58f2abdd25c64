"""A drive through a generated street, recorded as a ROS 2 bag (mcap) with sensor and ground-truth topics.

The ego vehicle drives along the street's right lane at the scene's ego speed. The LiDAR sweeps at
``lidar_hz`` (stamp = sweep start); the RGB and thermal cameras run on their own clocks with fixed offsets and a
small random jitter, as unsynchronised sensors do. The drive is cut into equal lighting segments (by default day,
glare, night). Every message carries the stamp of its own capture and its sensor's frame id; ``/tf`` holds the
ego pose (``odom`` -> ``base_link``) at every capture and ``/tf_static`` the sensor mounts.

Frames are rendered in a pool of worker processes (by default one per CPU core; each rebuilds the same scene from
the seed, with its static ray-casting structure built once) and written in stamp order by the parent, so the bag's
bytes do not depend on the number of workers. With an output path ending
in ``.mcap`` a single mcap file is written (readable by rosbags' ``AnyReader`` and ROS 2 Iron and newer);
otherwise a rosbag2 folder (``metadata.yaml`` + mcap), which every ROS 2 release plays. A calibration sidecar
(``<stem>.calib.yaml``: intrinsics, extrinsics, thermal-to-RGB homography) is written next to it.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time as _time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import yaml

from glassbox.sim.camera import (CameraConfig, homography_thermal_to_rgb, lighting_preset, render_cameras,
                                 render_thermal, rgb_camera, thermal_camera)
from glassbox.sim.lidar import LidarConfig, lidar_preset, scan_lidar
from glassbox.sim.scene import Scene, SceneConfig, make_scene

# Topic name -> message type. Sensor topics mimic common drivers; ground truth lives under /ground_truth.
TOPICS: dict[str, tuple[str, str]] = {
    "lidar": ("/sensors/lidar/points", "sensor_msgs/msg/PointCloud2"),
    "rgb": ("/sensors/camera/rgb/image_raw", "sensor_msgs/msg/Image"),
    "rgb_info": ("/sensors/camera/rgb/camera_info", "sensor_msgs/msg/CameraInfo"),
    "thermal": ("/sensors/camera/thermal/image_raw", "sensor_msgs/msg/Image"),
    "thermal8": ("/sensors/camera/thermal/image_mono8", "sensor_msgs/msg/Image"),
    "thermal_info": ("/sensors/camera/thermal/camera_info", "sensor_msgs/msg/CameraInfo"),
    "tf": ("/tf", "tf2_msgs/msg/TFMessage"),
    "tf_static": ("/tf_static", "tf2_msgs/msg/TFMessage"),
    "gt_lidar_boxes": ("/ground_truth/lidar/detections", "vision_msgs/msg/Detection3DArray"),
    "gt_lidar_labels": ("/ground_truth/lidar/point_labels", "sensor_msgs/msg/PointCloud2"),
    "gt_rgb_boxes": ("/ground_truth/camera/rgb/detections", "vision_msgs/msg/Detection2DArray"),
    "gt_rgb_semantic": ("/ground_truth/camera/rgb/semantic", "sensor_msgs/msg/Image"),
    "gt_rgb_instance": ("/ground_truth/camera/rgb/instance", "sensor_msgs/msg/Image"),
    "gt_thermal_boxes": ("/ground_truth/camera/thermal/detections", "vision_msgs/msg/Detection2DArray"),
    "gt_lighting": ("/ground_truth/lighting", "std_msgs/msg/String"),
}
ODOM_FRAME, BASE_FRAME = "odom", "base_link"


class DriveError(ValueError):
    """A drive configuration or output path is invalid."""


@dataclass(frozen=True)
class DriveConfig:
    """What to record. Rates in Hz, offsets and jitter in seconds; ``start_ns`` is the first stamp (fixed, so
    that the same seed gives the same bag)."""

    seconds: float = 20.0
    seed: int = 0
    lidar: str = "hdl64"
    lidar_hz: float = 10.0
    rgb_hz: float = 15.0
    thermal_hz: float = 10.0
    rgb_offset_s: float = 0.013
    thermal_offset_s: float = 0.041
    jitter_s: float = 0.0015
    segments: tuple[str, ...] = ("day", "glare", "night")
    rgb: CameraConfig = field(default_factory=rgb_camera)
    thermal: CameraConfig = field(default_factory=thermal_camera)
    scene: SceneConfig = field(default_factory=SceneConfig)
    start_ns: int = 1_700_000_000_000_000_000
    workers: int = 0                          # rendering processes; 0: one per CPU core
    compress: bool = True                     # zstd chunk compression of the mcap storage
    # Injected sensor faults (glassbox.faults): (name, start_s, end_s, severity in [0, 1]); listed in the sidecar.
    faults: tuple[tuple[str, float, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.seconds <= 0 or min(self.lidar_hz, self.rgb_hz, self.thermal_hz) <= 0:
            raise DriveError(f"DriveConfig: seconds and rates must be > 0 (seconds={self.seconds})")
        if self.workers < 0:
            raise DriveError(f"DriveConfig: workers must be >= 0 (0: one per CPU core), got {self.workers}")
        if not self.segments:
            raise DriveError("DriveConfig: at least one lighting segment is needed")
        for name in self.segments:
            lighting_preset(name)
        lidar_preset(self.lidar)
        if self.faults:
            self._check_faults()

    def _check_faults(self) -> None:
        from glassbox.faults import FaultError, get_fault
        for fault in self.faults:
            try:
                name, start, end, severity = fault
                get_fault(name)
            except (FaultError, TypeError, ValueError) as exc:
                raise DriveError(f"DriveConfig.faults: {fault!r}: {exc}") from None
            if not start < end or not 0.0 <= severity <= 1.0:
                raise DriveError(f"DriveConfig.faults: {fault!r} needs start < end and severity in [0, 1]")


@dataclass(frozen=True)
class Capture:
    """One sensor capture to render: ``kind`` in lidar / rgb / thermal, its index and time (s from start)."""

    kind: str
    index: int
    t: float
    lighting: str


def lighting_at(cfg: DriveConfig, t: float) -> str:
    k = min(int(t / (cfg.seconds / len(cfg.segments))), len(cfg.segments) - 1)
    return cfg.segments[max(k, 0)]


def schedule(cfg: DriveConfig) -> list[Capture]:
    """Every capture of the drive, in time order (ties: lidar, rgb, thermal)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xD21E]))
    caps = []
    for kind, hz, offset in (("lidar", cfg.lidar_hz, 0.0), ("rgb", cfg.rgb_hz, cfg.rgb_offset_s),
                             ("thermal", cfg.thermal_hz, cfg.thermal_offset_s)):
        n = int(np.ceil(cfg.seconds * hz)) + 1                  # then keep those before the end
        jitter = rng.normal(0.0, cfg.jitter_s, n) if kind != "lidar" else np.zeros(n)
        times = np.arange(n) / hz + offset + np.clip(jitter, -3 * cfg.jitter_s, 3 * cfg.jitter_s)
        caps += [Capture(kind, i, float(t), lighting_at(cfg, float(t))) for i, t in enumerate(times)
                 if t < cfg.seconds]
    order = {"lidar": 0, "rgb": 1, "thermal": 2}
    return sorted(caps, key=lambda c: (c.t, order[c.kind]))


def drive_scene_config(cfg: DriveConfig) -> SceneConfig:
    """The scene, long enough for the whole drive (plus 80 m of view beyond its end)."""
    need = cfg.scene.ego_start_m + cfg.scene.ego_speed_mps * cfg.seconds + 80.0
    return replace(cfg.scene, length_m=max(cfg.scene.length_m, need))


# ----------------------------------------------------------------------------------------- rendering workers
_WORKER: dict[str, Any] = {}


def _init_worker(cfg: DriveConfig) -> None:
    _WORKER["cfg"] = cfg
    _WORKER["scene"] = make_scene(cfg.seed, drive_scene_config(cfg))
    _WORKER["lidar"] = lidar_preset(cfg.lidar, rate_hz=cfg.lidar_hz)


def _capture_seed(cfg: DriveConfig, cap: Capture) -> int:
    code = {"lidar": 1, "rgb": 2, "thermal": 3}[cap.kind]
    return int(np.random.SeedSequence([cfg.seed, code, cap.index]).generate_state(1)[0])


def render_capture(scene: Scene, cfg: DriveConfig, lidar: LidarConfig, cap: Capture) -> dict[str, Any]:
    """The arrays of one capture (what the bag writer turns into messages)."""
    pose = scene.ego_pose(cap.t)
    seed = _capture_seed(cfg, cap)
    if cap.kind == "lidar":
        s = scan_lidar(scene, lidar, pose, seed, t=cap.t)
        return {"points": s.points, "ring": s.ring, "time": s.time, "label": s.label, "instance": s.instance,
                "boxes": s.boxes, "pose": pose}
    if cap.kind == "rgb":
        f = render_cameras(scene, cfg.rgb, None, pose, cap.lighting, seed, t=cap.t)
        return {"image": f.rgb, "semantic": f.semantic, "instance": f.instance, "boxes2d": f.boxes2d,
                "classes": f.box_classes, "ids": f.box_ids, "pose": pose}
    th = render_thermal(scene, cfg.thermal, pose, cap.lighting, seed, t=cap.t)
    return {"image16": th.thermal16, "image8": th.thermal8, "boxes2d": th.boxes2d, "classes": th.box_classes,
            "ids": th.box_ids, "pose": pose}


def inject_faults(cfg: DriveConfig, cap: Capture, a: dict[str, Any]) -> dict[str, Any]:
    """The capture's arrays with the faults of ``cfg.faults`` active at its time (ground truth is left as is;
    the per-point labels follow the LiDAR points a fault keeps)."""
    from glassbox.faults import get_fault, inject
    from glassbox.sim.camera import thermal_agc
    for name, start, end, severity in cfg.faults:
        if get_fault(name).sensor != cap.kind or not start <= cap.t < end:
            continue
        rng = np.random.default_rng(_capture_seed(cfg, cap) + 1)
        if cap.kind == "lidar":
            extra = np.column_stack([a["label"], a["instance"], a["time"]]).astype(np.float64)
            pts, ring = inject(name, (np.column_stack([a["points"], extra]), a["ring"]), severity, rng)
            a = {**a, "points": pts[:, :4].astype(np.float32), "ring": ring,
                 "label": pts[:, 4].astype(a["label"].dtype),
                 "instance": pts[:, 5].astype(a["instance"].dtype), "time": pts[:, 6].astype(a["time"].dtype)}
        elif cap.kind == "rgb":
            a = {**a, "image": inject(name, a["image"], severity, rng)}
        else:
            image16 = inject(name, a["image16"], severity, rng)
            a = {**a, "image16": image16, "image8": thermal_agc(image16)}
    return a


def _render_in_worker(cap: Capture) -> tuple[Capture, dict[str, Any]]:
    arrays = render_capture(_WORKER["scene"], _WORKER["cfg"], _WORKER["lidar"], cap)
    return cap, inject_faults(_WORKER["cfg"], cap, arrays) if _WORKER["cfg"].faults else arrays


def usable_cpus() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def drive_workers(cfg: DriveConfig) -> int:
    """The number of rendering processes: ``cfg.workers``, or one per usable CPU core when 0."""
    return cfg.workers or usable_cpus()


def iter_captures(cfg: DriveConfig) -> Iterator[tuple[Capture, dict[str, Any]]]:
    """Render the whole schedule, in order (in ``drive_workers(cfg)`` processes when > 1)."""
    caps = schedule(cfg)
    workers = drive_workers(cfg)
    if workers <= 1:
        _init_worker(cfg)
        for cap in caps:
            yield _render_in_worker(cap)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        yield from pool.imap(_render_in_worker, caps, chunksize=1)


# ------------------------------------------------------------------------------------------------ bag writer
@dataclass
class DriveSummary:
    path: Path
    calibration_path: Path
    messages: dict[str, int]
    seconds_rendered: float
    wall_s: float


def calibration(cfg: DriveConfig) -> dict[str, Any]:
    """Intrinsics, mounts (base_link <- sensor, 4x4) and the thermal->RGB homography, as plain lists."""
    lidar = lidar_preset(cfg.lidar)
    return {
        "frames": {"base": BASE_FRAME, "lidar": lidar.frame_id, "rgb": cfg.rgb.frame_id,
                   "thermal": cfg.thermal.frame_id},
        "rgb": {"width": cfg.rgb.width, "height": cfg.rgb.height, "K": cfg.rgb.intrinsics().tolist(),
                "base_T_cam": cfg.rgb.base_T_cam().tolist()},
        "thermal": {"width": cfg.thermal.width, "height": cfg.thermal.height, "K": cfg.thermal.intrinsics().tolist(),
                    "base_T_cam": cfg.thermal.base_T_cam().tolist()},
        "lidar": {"preset": cfg.lidar, "base_T_lidar": lidar.base_T_lidar().tolist()},
        "homography_thermal_to_rgb": homography_thermal_to_rgb(cfg.rgb, cfg.thermal).tolist(),
        **({"faults": [_fault_record(f) for f in cfg.faults]} if cfg.faults else {}),
    }


def _fault_record(fault: tuple[str, float, float, float]) -> dict[str, Any]:
    from glassbox.faults import get_fault
    name, start, end, severity = fault
    return {"name": name, "sensor": get_fault(name).sensor, "start_s": float(start), "end_s": float(end),
            "severity": float(severity)}


class _DriveWriter:
    """The open bag of a drive: one connection per topic, message counts, and one method per capture kind."""

    def __init__(self, bag_dir: Path, cfg: DriveConfig, lidar: LidarConfig) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        from glassbox import msg as gm
        from glassbox.bag import builders
        from glassbox.bag.typestore import make_typestore

        self.cfg, self.lidar = cfg, lidar
        self.codec, self.builders = gm, builders
        self.typestore = make_typestore()
        self.fac = gm.RosbagsFactory(self.typestore)
        self.counts = {k: 0 for k in TOPICS}
        self.writer = Writer(bag_dir, version=9, storage_plugin=StoragePlugin.MCAP)
        if cfg.compress:
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.writer.open()
        self.conns = {k: self.writer.add_connection(topic, typ, typestore=self.typestore)
                      for k, (topic, typ) in TOPICS.items()}

    def put(self, key: str, msg: Any, stamp_ns: int) -> None:
        self.writer.write(self.conns[key], stamp_ns, self.typestore.serialize_cdr(msg, TOPICS[key][1]))
        self.counts[key] += 1

    def close(self) -> None:
        self.writer.close()

    def _transform(self, matrix: np.ndarray, parent: str, child: str, stamp_ns: int) -> Any:
        return self.builders.make_transform_stamped(self.fac, matrix, parent, child, stamp_ns)

    def static_mounts(self, stamp_ns: int) -> None:
        """``/tf_static``: base_link -> LiDAR, RGB and thermal mounts."""
        cfg = self.cfg
        mounts = [self._transform(self.lidar.base_T_lidar(), BASE_FRAME, self.lidar.frame_id, stamp_ns),
                  self._transform(cfg.rgb.base_T_cam(), BASE_FRAME, cfg.rgb.frame_id, stamp_ns),
                  self._transform(cfg.thermal.base_T_cam(), BASE_FRAME, cfg.thermal.frame_id, stamp_ns)]
        self.put("tf_static", self.builders.make_tf_message(self.fac, mounts), stamp_ns)

    def capture(self, cap: Capture, a: dict[str, Any], ns: int) -> None:
        """The ego pose on ``/tf``, then the capture's sensor and ground-truth messages, all stamped ``ns``."""
        tf = self.builders.make_tf_message(self.fac, [self._transform(a["pose"], ODOM_FRAME, BASE_FRAME, ns)])
        self.put("tf", tf, ns)
        {"lidar": self._lidar, "rgb": self._rgb, "thermal": self._thermal}[cap.kind](cap, a, ns)

    def _lidar(self, cap: Capture, a: dict[str, Any], ns: int) -> None:
        c, fac = self.codec, self.fac
        hdr = c.make_header(fac, ns, self.lidar.frame_id)
        cloud = c.xyz_to_structured(a["points"], extra={"ring": a["ring"], "time": a["time"]})
        self.put("lidar", c.make_pointcloud2(fac, cloud, hdr), ns)
        b = a["boxes"]
        self.put("gt_lidar_boxes",
                 self.builders.make_gt_detection3d_array(fac, b.centers, b.sizes, b.yaw, b.classes, b.ids, hdr), ns)
        labels = np.empty(len(a["label"]), dtype=[("label", "<u1"), ("instance", "<i4")])
        labels["label"], labels["instance"] = a["label"], a["instance"]
        self.put("gt_lidar_labels", c.make_pointcloud2(fac, labels, hdr), ns)

    def _camera_info_and_boxes(self, cam: CameraConfig, info_key: str, boxes_key: str, a: dict[str, Any],
                               hdr: Any, ns: int) -> None:
        self.put(info_key, self.builders.make_camera_info(self.fac, cam.intrinsics(), cam.width, cam.height, hdr), ns)
        self.put(boxes_key, self.builders.make_gt_detection2d_array(self.fac, a["boxes2d"], a["classes"], a["ids"],
                                                                    hdr), ns)

    def _rgb(self, cap: Capture, a: dict[str, Any], ns: int) -> None:
        c, fac, cam = self.codec, self.fac, self.cfg.rgb
        hdr = c.make_header(fac, ns, cam.frame_id)
        self.put("rgb", c.make_image(fac, a["image"], "rgb8", hdr), ns)
        self._camera_info_and_boxes(cam, "rgb_info", "gt_rgb_boxes", a, hdr, ns)
        self.put("gt_rgb_semantic", c.make_image(fac, a["semantic"], "mono8", hdr), ns)
        inst16 = np.minimum(a["instance"], 65535).astype(np.uint16)
        self.put("gt_rgb_instance", c.make_image(fac, inst16, "mono16", hdr), ns)
        self.put("gt_lighting", fac.make("std_msgs/msg/String", data=cap.lighting), ns)

    def _thermal(self, cap: Capture, a: dict[str, Any], ns: int) -> None:
        c, fac, cam = self.codec, self.fac, self.cfg.thermal
        hdr = c.make_header(fac, ns, cam.frame_id)
        self.put("thermal", c.make_image(fac, a["image16"], "mono16", hdr), ns)
        self.put("thermal8", c.make_image(fac, a["image8"], "mono8", hdr), ns)
        self._camera_info_and_boxes(cam, "thermal_info", "gt_thermal_boxes", a, hdr, ns)


def write_drive(out: str | Path, cfg: DriveConfig = DriveConfig(),
                progress: Callable[[int, int], None] | None = None) -> DriveSummary:
    """Render the drive and write it to ``out`` (``*.mcap``: one mcap file; else a rosbag2 folder)."""
    out = Path(out)
    if out.exists():
        raise DriveError(f"{out} exists already; choose a new output path")
    single_file = out.suffix == ".mcap"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = _time.perf_counter()
    caps_total = len(schedule(cfg))
    lidar = lidar_preset(cfg.lidar, rate_hz=cfg.lidar_hz)
    tmpdir = Path(tempfile.mkdtemp(prefix=".drive-", dir=out.parent))
    bag_dir = tmpdir / out.stem if single_file else out
    try:
        bag = _DriveWriter(bag_dir, cfg, lidar)
        bag.static_mounts(cfg.start_ns)
        for n, (cap, arrays) in enumerate(iter_captures(cfg)):
            bag.capture(cap, arrays, cfg.start_ns + int(round(cap.t * 1e9)))
            if progress is not None:
                progress(n + 1, caps_total)
        bag.close()
        if single_file:
            shutil.move(str(bag_dir / f"{out.stem}.mcap"), out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    calib_path = out.with_name(f"{out.stem}.calib.yaml")
    calib_path.write_text(yaml.safe_dump(calibration(cfg), sort_keys=False))
    return DriveSummary(out, calib_path, bag.counts, cfg.seconds, _time.perf_counter() - t0)
