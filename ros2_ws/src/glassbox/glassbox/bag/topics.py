"""What a bag holds for a replay: the topic of each role, found by message type and content or from a map.

Roles are the sensor streams capabilities consume (``lidar``, ``rgb``, ``thermal``), the camera_info of the two
cameras (``rgb_info``, ``thermal_info``: the CameraInfo topic beside the image topic, as image_transport names
it), ground truth (``gt_*``) and the lighting label of ``glassbox sim`` bags.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from glassbox.msg.camera_info import camera_info_topic

if TYPE_CHECKING:
    from glassbox.bag.replay import ReplayResult

ROLE_TYPES = {"lidar": "sensor_msgs/msg/PointCloud2", "rgb": "sensor_msgs/msg/Image",
              "thermal": "sensor_msgs/msg/Image", "rgb_info": "sensor_msgs/msg/CameraInfo",
              "thermal_info": "sensor_msgs/msg/CameraInfo",
              "gt_lidar": "vision_msgs/msg/Detection3DArray", "gt_rgb": "vision_msgs/msg/Detection2DArray",
              "gt_semantic": "sensor_msgs/msg/Image", "lighting": "std_msgs/msg/String"}
ROLES = tuple(ROLE_TYPES)
#: a colour camera's encodings (mono ones excluded: a mono16 topic is taken for thermal)
COLOR_ENCODINGS = {"rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "rgb16", "bgr16", "yuv422", "uyvy", "yuv422_yuy2", "yuyv",
                   "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"}
THERMAL_ENCODINGS = {"mono16", "16UC1"}


class ReplayError(RuntimeError):
    """The bag cannot be (fully) replayed; the message says why. Output written so far stays valid, and
    ``result`` holds what was processed (None when nothing could be)."""

    def __init__(self, message: str, result: ReplayResult | None = None):
        super().__init__(message)
        self.result = result


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
    for role in ("rgb", "thermal"):
        info = camera_info_topic(roles[role]) if role in roles else ""
        if f"{role}_info" not in roles and by_topic.get(info) is not None and \
                by_topic[info].msgtype == ROLE_TYPES[f"{role}_info"]:
            roles[f"{role}_info"] = info
    for role, topic in roles.items():
        if counts.get(topic, 0) == 0:
            notes.append(f"topic {topic} ({role}) has no messages")
    return roles, notes
