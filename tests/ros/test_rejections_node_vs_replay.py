"""The same malformed inputs, between good ones, fed to a node over DDS and to the offline replay through a bag:
the replay's rejection counts by reason equal the node's diagnostics counts, and the good frames give the same
outputs. Both run one stage code path (``Stage.feed``), which is what this holds them to."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.serialization import serialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from glassbox import msg as gm
from glassbox.bag.replay import ReplayConfig, replay
from glassbox.bag.typestore import make_typestore
from glassbox.sim import SceneConfig, lidar_preset, make_scene, render_cameras, rgb_camera, scan_lidar
from glassbox_ros import converters as cv

pytestmark = pytest.mark.ros
ALWAYS_RUN = {"skip_without_subscribers": False}


def _header(sec: float, frame: str) -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = int(sec), int(round((sec % 1) * 1e9))
    return h


def lidar_inputs() -> list[tuple[PointCloud2, str | None]]:
    """(message, expected rejection reason or None) in publishing order."""
    scene = make_scene(3, SceneConfig())
    scan = scan_lidar(scene, lidar_preset("vlp16"), np.eye(4), seed=3)
    cloud = gm.xyz_to_structured(scan.points, extra={"ring": scan.ring.astype(np.uint16)})

    def good(sec):
        return cv.build.pointcloud2(cloud, _header(sec, "lidar"))
    empty = cv.build.pointcloud2(cloud[:0], _header(101, "lidar"))
    no_z = good(102)
    no_z.fields = [f for f in no_z.fields if f.name != "z"]
    short = good(103)
    short.data = bytes(short.data)[:-7]
    all_nan = cv.build.pointcloud2(gm.xyz_to_structured(np.full((40, 4), np.nan, np.float32)), _header(104, "lidar"))
    return [(good(100), None), (empty, "empty"), (no_z, "missing_field"), (short, "size_mismatch"),
            (all_nan, "empty"), (good(105), None), (good(104.5), "stamp_backwards"), (good(106), None)]


def camera_inputs() -> list[tuple[Image, str | None]]:
    frame = render_cameras(make_scene(5, SceneConfig()), rgb_camera(width=160, height=128), None, np.eye(4), "day", 5)
    rgb = np.ascontiguousarray(frame.rgb)

    def good(sec):
        return cv.build.image(rgb, "rgb8", _header(sec, "camera"))
    weird = good(11)
    weird.encoding = "yuv422_weird"
    short = good(12)
    short.data = bytes(short.data)[:-5]
    empty = Image(header=_header(13, "camera"), height=0, width=0, encoding="rgb8", step=0)
    return [(good(10), None), (weird, "bad_encoding"), (short, "size_mismatch"), (empty, "zero_size"),
            (good(14), None), (good(13.5), "stamp_backwards"), (good(15), None)]


CASES = {  # capability -> (executable, node name, input topic, role, input type, compared output, its type, inputs)
    "lidar": ("lidar_detector_node", "lidar_detector", "points", "lidar", "sensor_msgs/msg/PointCloud2",
              "detections", Detection3DArray, lidar_inputs),
    "refiner": ("image_refiner_node", "image_refiner", "rgb/image", "rgb", "sensor_msgs/msg/Image", "image_refined",
                Image, camera_inputs),
}


def _node_rejections(diags: list, node_name: str) -> dict[str, int]:
    for m in reversed(diags):
        for s in m.status:
            if s.name.endswith(node_name):
                return {k: int(v) for k, v in gm.status_values(s, "rejected/").items() if v != "0"}
    return {}


def _comparable(msg) -> np.ndarray:
    if hasattr(msg, "detections"):
        d = gm.detection3d_array_to_numpy(msg)
        return np.concatenate([d.centers, d.sizes, d.yaw[:, None], d.scores[:, None]], 1)
    return gm.image_to_array(msg).astype(np.float64)


def _write_bag(path: Path, topic: str, msgtype: str, msgs: list) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = make_typestore()
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection(topic, msgtype, typestore=ts)
        for i, m in enumerate(msgs):                     # log times increase even where a stamp goes back
            w.write(conn, 1_000_000_000 * (200 + i), serialize_message(m))


def _replay_outputs(bag: Path, topic: str) -> dict[int, np.ndarray]:
    with AnyReader([bag], default_typestore=make_typestore()) as r:
        return {gm.stamp_to_ns(m.header.stamp): _comparable(m) for m in
                (r.deserialize(raw, c.msgtype) for c, _, raw in
                 r.messages(connections=[c for c in r.connections if c.topic == topic]))}


@pytest.mark.parametrize("cap", list(CASES))
def test_node_and_replay_reject_alike_and_agree_on_good_frames(cap, model_cards, ros_client, start_node, tmp_path):
    executable, node_name, in_topic, role, in_type, out_suffix, out_type, make_inputs = CASES[cap]
    inputs = make_inputs()
    expected = Counter(reason for _, reason in inputs if reason)
    good_stamps = sorted({gm.stamp_to_ns(m.header.stamp) for m, reason in inputs if reason is None})

    # Offline: the same serialised messages through a bag.
    bag, out = tmp_path / "in", tmp_path / "out"
    _write_bag(bag, f"/{in_topic}", in_type, [m for m, _ in inputs])
    result = replay(bag, out, ReplayConfig(capabilities=(cap,), **{f"{cap}_card": str(model_cards[cap])}),
                    topic_map={role: f"/{in_topic}"})
    offline_rejected = {k.split(":", 1)[1]: n for k, n in result.rejected.items()}
    assert offline_rejected == dict(expected)
    offline = _replay_outputs(out, f"/glassbox/{cap}/{out_suffix}")
    assert sorted(offline) == good_stamps

    # Live: the node over DDS, with its defaults (the card's settings, like the replay).
    ns = f"/glassbox/{cap}"
    node = start_node(executable, namespace=ns, params={"model_card": str(model_cards[cap]),
                                                        "diagnostics_period_s": 0.2, **ALWAYS_RUN})
    received = ros_client.subscribe(out_type, f"{ns}/{out_suffix}")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(type(inputs[0][0]), f"{ns}/{in_topic}")
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.wait_for_publishers([f"{ns}/{out_suffix}"], timeout=120)
    first = inputs[0][0]
    ros_client.publish_until(lambda: pub.publish(first), lambda: bool(received), what=f"a first {out_suffix}")
    for m, _ in inputs[1:]:
        pub.publish(m)
        ros_client.spin_for(0.3)
    ros_client.spin_until(lambda: _node_rejections(diags, node_name) == dict(expected), 60,
                          f"{dict(expected)} in the diagnostics of {node_name} (got "
                          f"{_node_rejections(diags, node_name)})")
    ros_client.wait_for_messages(f"{ns}/{out_suffix}", timeout=120,
                                 predicate=lambda m: gm.stamp_to_ns(m.header.stamp) == good_stamps[-1])
    live = {gm.stamp_to_ns(m.header.stamp): _comparable(m) for m in received}
    assert sorted(live) == good_stamps
    for stamp in good_stamps:
        assert live[stamp].shape == offline[stamp].shape, stamp
        np.testing.assert_allclose(live[stamp], offline[stamp], atol=1e-4)
    assert node.alive() and node.stop() == 0, node.log()
