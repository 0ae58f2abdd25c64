"""Camera inputs as image_transport names them, with the camera_info beside them.

A camera stream's base topic (``image``, remapped to e.g. ``/camera/color/image_raw``) is subscribed raw
(sensor_msgs/Image) or as ``<base>/compressed`` (sensor_msgs/CompressedImage, JPEG or PNG), chosen by the read-only
parameter ``image_transport`` (``raw`` | ``compressed``, the parameter image_transport's own subscribers read); in
a node of several cameras ``<role>.image_transport`` (e.g. ``thermal.image_transport``) overrides it for one of
them. The camera's sensor_msgs/CameraInfo is the sibling ``camera_info`` of the resolved base topic
(``/camera/color/camera_info``), found the way image_transport's CameraSubscriber finds it. It is optional: the
stage uses the latest one it got, and runs as without it until one comes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from glassbox.capabilities import CAMERA_INFO, COMPRESSED_IMAGE, Stream
from glassbox.msg import camera_info_topic
from glassbox_ros.node_common import declare, overridable

TRANSPORTS = ("raw", "compressed")


def subscribe_inputs(node: Any, inputs: Sequence[Stream], on_input: Callable[[str, Any], None],
                     qos: Any) -> tuple[list[Any], dict[str, str]]:
    """Subscriptions of every input of a node (camera streams by transport, plus their camera_info) and the
    facts for its diagnostics (transport and camera_info topic of each camera)."""
    from glassbox_ros.converters import RclpyFactory
    cameras = [s for s in inputs if s.is_camera]
    default = _declare_once(node, "image_transport", "raw", "how camera images arrive: raw (sensor_msgs/Image on the "
                      "image topic) or compressed (sensor_msgs/CompressedImage, JPEG or PNG, on <image>/compressed)",
                      choices=TRANSPORTS, read_only=True) if cameras else ""
    subs, info = [], {}
    for s in inputs:
        callback = partial(on_input, s.role)
        if not s.is_camera:
            subs.append(node.create_subscription(RclpyFactory._cls(s.msg_type), s.topic, callback, qos,
                                                 qos_overriding_options=overridable()))
            continue
        transport = default
        if len(cameras) > 1:
            transport = _declare_once(node, f"{s.role}.image_transport", "", f"image_transport of the {s.role} camera; "
                                "empty = image_transport", choices=("",) + TRANSPORTS, read_only=True) or default
        base = node.resolve_topic_name(s.topic)
        if transport == "compressed":
            subs.append(node.create_subscription(RclpyFactory._cls(COMPRESSED_IMAGE), f"{base}/compressed", callback,
                                                 qos, qos_overriding_options=overridable()))
        else:
            subs.append(node.create_subscription(RclpyFactory._cls(s.msg_type), s.topic, callback, qos,
                                                 qos_overriding_options=overridable()))
        info[f"{s.role}/image_transport"] = transport
        if hasattr(node.stage, "camera_info"):
            info_topic = info[f"{s.role}/camera_info"] = camera_info_topic(base)
            subs.append(node.create_subscription(RclpyFactory._cls(CAMERA_INFO), info_topic,
                                                 partial(_on_camera_info, node, s.role), qos,
                                                 qos_overriding_options=overridable()))
    return subs, info


def _declare_once(node: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """:func:`declare`, or the value of the parameter a previous activation of the node declared."""
    return node.get_parameter(name).value if node.has_parameter(name) else declare(node, name, *args, **kwargs)


def _on_camera_info(node: Any, role: str, msg: Any) -> None:
    """Hand a CameraInfo to the node's stage; a malformed one is rejected and counted like any input."""
    from glassbox.msg import ConversionError
    try:
        node.stage.camera_info(role, msg)
    except ConversionError as exc:
        node.diag.reject(exc.reason, f"camera_info of {role}: {exc}")
