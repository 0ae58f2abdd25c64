"""Managed (lifecycle) perception nodes as real processes, driven through their ``change_state`` service as
``ros2 lifecycle set`` does: nothing is subscribed or published before activation; a parameter set while
unconfigured is applied at configure; outputs flow once active, stop when deactivated and flow again when
reactivated; cleanup removes the publishers; shutdown works from any state and the process exits cleanly; a
tampered model fails configure with its reason and leaves the node unconfigured and alive."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from glassbox_msgs.msg import EntropyProfile
from lifecycle_msgs.msg import Transition
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from glassbox.sim import SceneConfig, make_scene, render_cameras, rgb_camera
from glassbox_ros import converters as cv
from harness import REPO, hdl32_scan_msg

pytestmark = pytest.mark.ros
NS = "/glassbox/lidar"
NODE = f"{NS}/lidar_detector"
OUTPUTS = {"detections": Detection3DArray, "markers": MarkerArray, "entropy": EntropyProfile}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
MANAGED = {"lifecycle": True, "skip_without_subscribers": False, "diagnostics_period_s": 0.2}


def _status_message(diags, name: str) -> str | None:
    return next((s.message for m in reversed(diags) for s in m.status if s.name.endswith(name)), None)


def test_managed_lidar_node_lifecycle(lidar_card, ros_client, start_node):
    node = start_node("lidar_detector_node", params_file=REPO / "config/lidar_detector.yaml", namespace=NS,
                      params={"model_card": str(lidar_card), **MANAGED})
    topics = [f"{NS}/{suffix}" for suffix in OUTPUTS]
    for suffix, typ in OUTPUTS.items():
        ros_client.subscribe(typ, f"{NS}/{suffix}")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(PointCloud2, f"{NS}/points")
    published = lambda sec: [m for m in ros_client.received[f"{NS}/detections"]  # noqa: E731
                             if m.header.stamp.sec == sec]

    # Unconfigured: no subscription, no output publisher; diagnostics say the state.
    assert ros_client.lifecycle_state(NODE) == "unconfigured"
    ros_client.spin_until(lambda: _status_message(diags, "lidar_detector") == "unconfigured", 60,
                          "'unconfigured' in the diagnostics")
    assert pub.get_subscription_count() == 0
    assert all(ros_client._subs[t].get_publisher_count() == 0 for t in topics)
    # A live parameter set before the stage exists is kept and applied at configure.
    assert ros_client.set_parameters(NODE, {"marker_lifetime_s": 1.5})[0].successful
    assert node.alive()

    assert ros_client.change_state(NODE, Transition.TRANSITION_CONFIGURE)
    assert ros_client.lifecycle_state(NODE) == "inactive"
    ros_client.wait_for_publishers(topics, timeout=120)     # publishers exist once configured ...
    for sec in (1, 2, 3):                                   # ... but nothing is subscribed, nothing published
        pub.publish(hdl32_scan_msg(sec))
        ros_client.spin_for(0.3)
    assert pub.get_subscription_count() == 0
    assert all(not ros_client.received[t] for t in topics)
    ros_client.spin_until(lambda: _status_message(diags, "lidar_detector") == "inactive", 60,
                          "'inactive' in the diagnostics")

    assert ros_client.change_state(NODE, Transition.TRANSITION_ACTIVATE)
    assert ros_client.lifecycle_state(NODE) == "active"
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.publish_until(lambda: pub.publish(hdl32_scan_msg(10)), lambda: bool(published(10)))
    markers = ros_client.wait_for_messages(f"{NS}/markers", timeout=60)[0].markers
    boxes = [m for m in markers if m.action != m.DELETEALL]
    assert boxes and all((m.lifetime.sec, m.lifetime.nanosec) == (1, 500_000_000) for m in boxes)
    ros_client.subscribe(LabelInfo, f"{NS}/label_info", LATCHED)
    ros_client.wait_for_messages(f"{NS}/label_info", timeout=60)

    # Deactivated: the subscription goes, scans are no longer processed.
    assert ros_client.change_state(NODE, Transition.TRANSITION_DEACTIVATE)
    assert ros_client.lifecycle_state(NODE) == "inactive"
    ros_client.spin_until(lambda: pub.get_subscription_count() == 0, 60, "the node's subscription to go")
    for _ in range(5):
        pub.publish(hdl32_scan_msg(20))
        ros_client.spin_for(0.3)
    ros_client.spin_for(2.0)
    assert not published(20)

    # Reactivated: processing again (the subscriptions and their parameters are made again).
    assert ros_client.change_state(NODE, Transition.TRANSITION_ACTIVATE)
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.publish_until(lambda: pub.publish(hdl32_scan_msg(30)), lambda: bool(published(30)))

    # Deactivate and clean up: back to unconfigured, the output publishers removed.
    assert ros_client.change_state(NODE, Transition.TRANSITION_DEACTIVATE)
    assert ros_client.change_state(NODE, Transition.TRANSITION_CLEANUP)
    assert ros_client.lifecycle_state(NODE) == "unconfigured"
    ros_client.spin_until(lambda: all(ros_client._subs[t].get_publisher_count() == 0 for t in topics), 60,
                          "the output publishers to go")
    assert ros_client.change_state(NODE, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert ros_client.lifecycle_state(NODE) == "finalized"
    assert node.alive()
    assert node.stop() == 0, node.log()


def test_tampered_model_fails_configure_with_reason(lidar_card, tmp_path, ros_client, start_node):
    folder = tmp_path / "m"
    shutil.copytree(lidar_card.parent, folder)
    onnx = folder / "spi_test.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    node = start_node("lidar_detector_node", namespace=NS,
                      params={"model_card": str(folder / "spi_test.card.yaml"), **MANAGED})
    assert not ros_client.change_state(NODE, Transition.TRANSITION_CONFIGURE)
    assert ros_client.lifecycle_state(NODE) == "unconfigured"
    assert node.alive()
    log = node.log()
    assert "cannot configure" in log and "spi_test.onnx" in log and "expected sha256" in log
    assert not ros_client.change_state(NODE, Transition.TRANSITION_ACTIVATE)      # not configured: refused
    assert ros_client.change_state(NODE, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert node.stop() == 0, node.log()


@pytest.mark.parametrize("executable, capability, output", [
    ("image_refiner_node", "refiner", "image_refined"),
    ("segmentation_node", "segmentation", "labels"),
    ("fusion_node", "fusion", "detections"),
])
def test_managed_camera_nodes_run_once_active_and_shut_down_from_active(executable, capability, output, model_cards,
                                                                        ros_client, start_node):
    from glassbox.capabilities import get
    record = get(capability)
    ns = f"/glassbox/{record.namespace}"
    name = f"{ns}/{record.node_name}"
    node = start_node(executable, params_file=REPO / "config" / record.params_file, namespace=ns,
                      params={"model_card": str(model_cards[capability]), **MANAGED})
    outputs = ros_client.subscribe(cv.RclpyFactory._cls(record.outputs[output]), f"{ns}/{output}")
    cam = rgb_camera(width=320, height=256)
    rgb = render_cameras(make_scene(5, SceneConfig()), cam, None, np.eye(4), "day", 5).rgb
    pubs = {s.role: ros_client.publisher(Image, f"{ns}/{s.topic}") for s in record.inputs}
    assert ros_client.change_state(name, Transition.TRANSITION_CONFIGURE)
    ros_client.spin_for(1.0)
    assert all(p.get_subscription_count() == 0 for p in pubs.values())
    assert ros_client.change_state(name, Transition.TRANSITION_ACTIVATE)
    for p in pubs.values():
        ros_client.wait_for_subscribers(p, timeout=120)

    stamps = iter(range(1, 100))

    def send() -> None:                     # a frame per camera, the same fresh stamp on each
        header = Header(frame_id="camera")
        header.stamp.sec = next(stamps)
        for role, p in pubs.items():
            image = rgb if role == "rgb" else np.ascontiguousarray(rgb[..., 0]).astype(np.uint16) * 256
            p.publish(cv.build.image(image, "rgb8" if role == "rgb" else "mono16", header))
    ros_client.publish_until(send, lambda: bool(outputs), what=f"{output} of {executable}")
    assert ros_client.change_state(name, Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert ros_client.lifecycle_state(name) == "finalized"
    assert node.stop() == 0, node.log()
