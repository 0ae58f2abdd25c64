"""The capability record: everything the suite knows about one perception capability, in one table.

A capability is one perception job the suite runs on the robot and in replay: its input streams, the message-level
stage and core pipeline that do the work, the model card shipped for it, the node executable and parameter file
that run it under ROS 2, its output topics, its metrics and report section in a replay, its benchmark case and
the trainer task that makes its card. Build (``glassbox.stages.build``), bag replay and live replay, the report,
the launch files, the node benchmark, the trainer and the CLI all read ``CAPABILITIES``; nothing else lists
capabilities by hand.

Classes and functions are named by import path (``"module:attribute"``) and loaded on use with :func:`load`, so
that this module stays free of torch, ONNX Runtime and ROS imports (launch files read it).

Adding a capability is its model file, one record here (or in a module named in ``$GLASSBOX_CAPABILITIES``,
which calls :func:`register`) and its parameter file in ``config/``.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
ENTROPY = "glassbox_msgs/msg/EntropyProfile"
DETECTION_UNCERTAINTY = "glassbox_msgs/msg/DetectionUncertaintyArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"

#: sensor role -> the launch argument that names the robot's topic for it
ROLE_LAUNCH_ARGS = {"lidar": "points_topic", "rgb": "camera_topic", "thermal": "thermal_topic"}
#: sensor role -> ground-truth role in a bag written by ``glassbox sim``
ROLE_GROUND_TRUTH = {"lidar": "gt_lidar", "rgb": "gt_rgb"}


class CapabilityError(KeyError):
    """An unknown capability name, or a record that cannot be loaded."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Stream:
    """One input of a capability: the node's subscription name, its message type and the sensor role it is.

    A camera stream (``msg_type`` Image) is what image_transport calls a base topic: the node takes it raw, or
    ``<topic>/compressed`` (CompressedImage) with ``image_transport: compressed``, and subscribes to the sibling
    ``camera_info`` of the topic it resolves to (``/cam/image_raw`` -> ``/cam/camera_info``). Camera inputs live
    in a sub-namespace per camera (``rgb/image``, ``thermal/image``), so that an input's camera_info
    (``rgb/camera_info``) is never the ``camera_info`` a node publishes beside its own output images.
    """

    topic: str          # relative to the node namespace, e.g. "points"
    msg_type: str       # e.g. "sensor_msgs/msg/PointCloud2"
    role: str           # sensor role in bags and launch arguments: "lidar", "rgb", "thermal"

    @property
    def is_camera(self) -> bool:
        return self.msg_type == IMAGE


@dataclass(frozen=True)
class Capability:
    """One perception capability (see the module docstring)."""

    name: str                           # "lidar"
    task: str                           # task family: detection3d, refinement, segmentation, detection2d
    inputs: tuple[Stream, ...]          # in the order the stage takes them
    outputs: dict[str, str]             # topic suffix -> message type (all carry the input's header)
    stage: str                          # "module:Class" of the message-level stage
    pipeline: str                       # "module:Class" of the core pipeline (has ``from_card``)
    default_card: str                   # model card file name in the models folder
    node: str                           # node executable, "lidar_detector_node"
    node_name: str                      # default node name, "lidar_detector"
    namespace: str                      # sub-namespace under the suite's namespace, "lidar"
    params_file: str                    # parameter YAML in config/, "lidar_detector.yaml"
    train_task: str                     # trainer task (``task:`` in a training config), "lidar"
    metrics: str = ""                   # "module:function" (frames, ground_truth) -> metrics per segment
    report: str = ""                    # "module:function" rendering the report section of this capability
    bench: dict[str, Any] = field(default_factory=dict)   # node benchmark case: input sizes, rates
    title: str = ""                     # heading in reports, "LiDAR 3D detection"
    headline: tuple[str, str] = ()      # (metric key, label) summarised after a replay
    description: str = ""
    latched: dict[str, str] = field(default_factory=dict)  # suffix -> type, published once, transient local

    @property
    def roles(self) -> tuple[str, ...]:
        """The sensor roles this capability consumes."""
        return tuple(s.role for s in self.inputs)

    @property
    def stream_types(self) -> dict[str, str]:
        """Node subscription name -> message type."""
        return {s.topic: s.msg_type for s in self.inputs}

    def load_stage(self) -> type:
        return load(self.stage)

    def load_pipeline(self) -> type:
        return load(self.pipeline)


def load(path: str) -> Any:
    """The object named ``"package.module:attribute"``."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise CapabilityError(f"'{path}' is not a 'module:attribute' path")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise CapabilityError(f"cannot load '{path}': {exc}") from exc


_BUILTIN = (
    Capability(
        name="lidar", task="detection3d",
        inputs=(Stream("points", POINTCLOUD2, "lidar"),),
        outputs={"detections": "vision_msgs/msg/Detection3DArray", "markers": "visualization_msgs/msg/MarkerArray",
                 "detection_uncertainty": DETECTION_UNCERTAINTY, "entropy": ENTROPY},
        latched={"label_info": LABEL_INFO},
        stage="glassbox.stages.lidar:LidarStage", pipeline="glassbox.pipelines.lidar:LidarDetectionPipeline",
        default_card="spi_lidar.card.yaml", node="lidar_detector_node", node_name="lidar_detector",
        namespace="lidar", params_file="lidar_detector.yaml", train_task="lidar",
        metrics="glassbox.bag.metrics:lidar_metrics",
        headline=("car/bev@0.5", "car BEV AP@0.5"),
        title="LiDAR 3D detection", report="glassbox.bag.sections:lidar_section",
        bench={"rate_hz": 10.0},
        description="3D boxes from a spinning LiDAR's range image (SPI detector)"),
    Capability(
        name="refiner", task="refinement",
        inputs=(Stream("rgb/image", IMAGE, "rgb"),),
        outputs={"image_refined": IMAGE, "camera_info": CAMERA_INFO, "entropy": ENTROPY},
        stage="glassbox.stages.camera:RefinerStage", pipeline="glassbox.pipelines.refiner:RefinerPipeline",
        default_card="refiner.card.yaml", node="image_refiner_node", node_name="image_refiner",
        namespace="refiner", params_file="image_refiner.yaml", train_task="refiner",
        title="Image refinement",
        bench={"rate_hz": 15.0},
        description="brightness, contrast and colour repair in front of any camera model (pseudo-active refiner)"),
    Capability(
        name="segmentation", task="segmentation",
        inputs=(Stream("rgb/image", IMAGE, "rgb"),),
        outputs={"labels": IMAGE, "overlay": IMAGE, "uncertainty_map": IMAGE, "epistemic_map": IMAGE,
                 "camera_info": CAMERA_INFO, "entropy": ENTROPY},
        latched={"label_info": LABEL_INFO},
        stage="glassbox.stages.camera:SegmentationStage",
        pipeline="glassbox.pipelines.segmentation:SegmentationPipeline",
        default_card="bisenet.card.yaml", node="segmentation_node", node_name="segmentation",
        namespace="segmentation", params_file="segmentation.yaml", train_task="segmentation",
        metrics="glassbox.bag.metrics:segmentation_metrics",
        headline=("miou", "mIoU"),
        title="Segmentation", report="glassbox.bag.sections:segmentation_section",
        bench={"rate_hz": 15.0},
        description="per-pixel classes (BiSeNet)"),
    Capability(
        name="fusion", task="detection2d",
        inputs=(Stream("rgb/image", IMAGE, "rgb"), Stream("thermal/image", IMAGE, "thermal")),
        outputs={"detections": "vision_msgs/msg/Detection2DArray", "fusion_weights": "glassbox_msgs/msg/FusionWeights",
                 "overlay": IMAGE, "detection_uncertainty": DETECTION_UNCERTAINTY, "entropy": ENTROPY},
        latched={"label_info": LABEL_INFO},
        stage="glassbox.stages.camera:FusionStage", pipeline="glassbox.pipelines.fusion:FusionPipeline",
        default_card="gem.card.yaml", node="fusion_node", node_name="fusion",
        namespace="fusion", params_file="fusion.yaml", train_task="fusion",
        metrics="glassbox.bag.metrics:fusion_metrics",
        headline=("map50", "mAP@0.5"),
        title="RGB-thermal fusion detection", report="glassbox.bag.sections:fusion_section",
        bench={"rate_hz": 10.0},
        description="2D boxes from RGB + thermal, reliability-weighted (GEM)"),
)

CAPABILITIES: dict[str, Capability] = {c.name: c for c in _BUILTIN}


def register(capability: Capability, replace: bool = False) -> Capability:
    """Add a capability to the table (a plug-in module calls this when it is imported)."""
    if capability.name in CAPABILITIES and not replace:
        raise CapabilityError(f"capability '{capability.name}' is already registered")
    CAPABILITIES[capability.name] = capability
    return capability


def get(name: str) -> Capability:
    """The record of ``name``; a clear error naming the known ones otherwise."""
    _load_plugins()
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise CapabilityError(f"unknown capability '{name}' (known: {', '.join(CAPABILITIES)})") from None


def names() -> tuple[str, ...]:
    """Every registered capability, built-ins first."""
    _load_plugins()
    return tuple(CAPABILITIES)


def all_capabilities() -> tuple[Capability, ...]:
    _load_plugins()
    return tuple(CAPABILITIES.values())


def by_node(executable: str) -> Capability:
    """The capability whose node executable is ``executable``."""
    for cap in all_capabilities():
        if cap.node == executable:
            return cap
    raise CapabilityError(f"no capability runs the node '{executable}'")


_PLUGINS_LOADED: set[str] = set()


def _load_plugins() -> None:
    """Import the modules named in ``$GLASSBOX_CAPABILITIES`` (comma-separated); each registers its records."""
    for module in filter(None, (m.strip() for m in os.environ.get("GLASSBOX_CAPABILITIES", "").split(","))):
        if module not in _PLUGINS_LOADED:
            _PLUGINS_LOADED.add(module)
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise CapabilityError(f"GLASSBOX_CAPABILITIES names '{module}', which cannot be imported: {exc}"
                                      ) from exc


#: the entropy monitor: not a capability (it watches the capabilities' entropy topics), started by the suite
MONITOR_NODE = {"key": "monitor", "package": "glassbox_ros", "executable": "entropy_monitor_node",
                "name": "entropy_monitor", "sub_namespace": "", "config": "entropy_monitor.yaml", "card": "",
                "remappings": []}


def node_specs() -> list[dict[str, Any]]:
    """What the suite's launch file starts: one entry per capability (in table order) and the monitor last.

    ``remappings`` pairs each node input with the launch argument that names the robot's topic for its role.
    """
    specs = [{"key": c.name, "package": "glassbox_ros", "executable": c.node, "name": c.node_name,
              "sub_namespace": c.namespace, "config": c.params_file, "card": c.default_card,
              "remappings": [(s.topic, ROLE_LAUNCH_ARGS[s.role]) for s in c.inputs]}
             for c in all_capabilities()]
    return specs + [dict(MONITOR_NODE)]
