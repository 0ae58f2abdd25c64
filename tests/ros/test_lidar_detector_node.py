"""lidar_detector_node as a real process: every output topic with the input's header; pose covariances equal
to the detections' spreads, labelled markers, the label map for late subscribers; malformed clouds are rejected
with a reason, counted in diagnostics, and the node keeps serving; a cloud of another sensor is resampled and said
so in diagnostics; a tampered model stops it at start."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from glassbox_msgs.msg import DetectionUncertaintyArray, EntropyProfile
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import Marker, MarkerArray

from glassbox import msg as gm
from glassbox_ros import converters as cv
from harness import REPO, hdl32_scan_msg

# Discovery is not symmetric in time: the node may not yet see the test's subscriptions when the first input
# arrives, and would then (correctly) skip it. These tests are about outputs, so the node always runs;
# test_skips_inference_without_subscribers covers the skipping.
ALWAYS_RUN = {"skip_without_subscribers": False}

pytestmark = pytest.mark.ros
NS = "/glassbox/lidar"
OUTPUTS = {"detections": Detection3DArray, "markers": MarkerArray, "entropy": EntropyProfile,
           "detection_uncertainty": DetectionUncertaintyArray}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _diag_value(msgs, key):
    for m in reversed(msgs):
        for s in m.status:
            if s.name.endswith("lidar_detector"):
                for kv in s.values:
                    if kv.key == key:
                        return kv.value
    return None


def test_lidar_node_outputs_rejections_and_recovery(lidar_card, ros_client, start_node):
    node = start_node("lidar_detector_node", params_file=REPO / "config/lidar_detector.yaml",
                      params={"model_card": str(lidar_card), "diagnostics_period_s": 0.2, **ALWAYS_RUN},
                      namespace=NS)
    for suffix, typ in OUTPUTS.items():
        ros_client.subscribe(typ, f"{NS}/{suffix}")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(PointCloud2, f"{NS}/points")
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.wait_for_publishers([f"{NS}/{suffix}" for suffix in OUTPUTS], timeout=120)

    good = hdl32_scan_msg(100)
    ros_client.publish_until(lambda: pub.publish(good), lambda: all(ros_client.received[f"{NS}/{s}"] for s in OUTPUTS))
    for suffix in OUTPUTS:
        msgs = ros_client.wait_for_messages(f"{NS}/{suffix}", timeout=120)
        header = msgs[0].header if hasattr(msgs[0], "header") else msgs[0].markers[0].header
        assert (header.stamp.sec, header.frame_id) == (100, "lidar"), suffix
    prof = ros_client.received[f"{NS}/entropy"][0]
    assert len(prof.layer_names) == len(prof.entropy_nats) > 0 and np.isfinite(prof.entropy_nats).all()

    # Pose covariances are the spreads of the DetectionUncertainty with the same header (m^2, rad^2).
    dets, unc = ros_client.received[f"{NS}/detections"][0], ros_client.received[f"{NS}/detection_uncertainty"][0]
    assert len(dets.detections) == len(unc.detections) > 0
    for d, u in zip(dets.detections, unc.detections):
        cov = np.asarray(d.results[0].pose.covariance).reshape(6, 6)
        assert d.id == u.detection_id and u.center_std > 0 and u.yaw_std_rad > 0
        assert np.trace(cov[:3, :3]) == pytest.approx(u.center_std ** 2, rel=1e-9)
        assert cov[0, 0] == cov[1, 1] == cov[2, 2] and cov[5, 5] == pytest.approx(u.yaw_std_rad ** 2, rel=1e-9)
    # Markers: DELETEALL first, then a box and a facing label per detection, in the namespace of its class.
    markers = ros_client.received[f"{NS}/markers"][0].markers
    assert markers[0].action == Marker.DELETEALL
    texts = [m for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    cubes = [m for m in markers if m.type == Marker.CUBE]
    names = [d.results[0].hypothesis.class_id for d in dets.detections]
    scores = [d.results[0].hypothesis.score for d in dets.detections]
    assert [t.text for t in texts] == [f"{n} {s:.2f}" for n, s in zip(names, scores)]
    assert [m.ns for m in cubes] == [t.ns for t in texts] == names and len(cubes) == len(names)
    # The label map, for a subscriber that comes after it was published (transient local).
    ros_client.subscribe(LabelInfo, f"{NS}/label_info", LATCHED)
    info = ros_client.wait_for_messages(f"{NS}/label_info", timeout=60)[0]
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "car"), (1, "pedestrian"), (2, "cyclist")]
    assert info.threshold == pytest.approx(0.05) and set(names) <= {c.class_name for c in info.class_map}

    # Malformed inputs, each with a later stamp so only the defect is wrong.
    empty = PointCloud2(header=Header(frame_id="lidar"), height=1, width=0, point_step=16, row_step=0,
                        fields=list(good.fields))
    all_nan = cv.build.pointcloud2(gm.xyz_to_structured(np.full((50, 4), np.nan, np.float32)), Header())
    no_x = hdl32_scan_msg(0)
    no_x.fields = [f for f in no_x.fields if f.name != "x"]
    short = hdl32_scan_msg(0)
    short.data = bytes(short.data)[:-7]
    # every beam far above the model's vertical field of view: nothing to resample into its rows
    e = np.deg2rad(np.repeat(np.linspace(60.0, 45.0, 16), 64))
    a = np.tile(np.linspace(-np.pi, np.pi, 64, endpoint=False), 16)
    sky = np.stack([10 * np.cos(e) * np.cos(a), 10 * np.cos(e) * np.sin(a), 10 * np.sin(e), np.ones_like(e)], 1)
    sky_msg = cv.build.pointcloud2(gm.xyz_to_structured(sky.astype(np.float32), extra={
        "ring": np.repeat(np.arange(16), 64).astype(np.uint16)}), Header())
    backwards = hdl32_scan_msg(99)               # 0.5 s before the last accepted scan (100 s): a reordering, rejected
    backwards.header.stamp.nanosec = 500_000_000
    pub.publish(backwards)
    ros_client.spin_for(0.2)
    bad = {"empty": empty, "all_nan": all_nan, "no_x": no_x, "short": short, "sky": sky_msg}
    for i, msg in enumerate(bad.values()):
        msg.header.stamp.sec = 101 + i
        msg.header.frame_id = "lidar"
        pub.publish(msg)
        ros_client.spin_for(0.2)

    def rejected_total():
        total = 0
        for m in reversed(diags):
            for s in m.status:
                if s.name.endswith("lidar_detector"):
                    return sum(int(kv.value) for kv in s.values if kv.key.startswith("rejected/"))
        return total
    ros_client.spin_until(lambda: rejected_total() >= 6, 30, "6 rejections in diagnostics")
    assert _diag_value(diags, "rejected/stamp_backwards") == "1"
    assert _diag_value(diags, "rejected/sensor_mismatch") == "1"
    assert node.alive()

    # The next valid message is answered.
    n_before = len(ros_client.received[f"{NS}/detections"])
    pub.publish(hdl32_scan_msg(200))
    ros_client.wait_for_messages(f"{NS}/detections", count=n_before + 1, timeout=120)
    assert ros_client.received[f"{NS}/detections"][-1].header.stamp.sec == 200
    assert _diag_value(diags, "backend") == "onnxruntime"
    # the HDL-32E scans are fitted to the test model's 32 uniform rows and its 0-1 intensities, and it says so
    ros_client.spin_until(lambda: _diag_value(diags, "sensor/rows") == "ring remapped by elevation", 30,
                          "the last scan's rows in diagnostics")
    status = next(s for m in reversed(diags) for s in m.status if s.name.endswith("lidar_detector"))
    assert "resampled to the model's 32 rows" in status.message and "intensity 0-255 rescaled" in status.message
    assert node.stop() == 0, node.log()


def test_tampered_model_stops_node_naming_file_and_hash(lidar_card, tmp_path, start_node):
    import shutil
    folder = tmp_path / "m"
    shutil.copytree(lidar_card.parent, folder)
    onnx = folder / "spi_test.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    node = start_node("lidar_detector_node", params={"model_card": str(folder / "spi_test.card.yaml")})
    assert node.proc.wait(timeout=120) == 1
    log = node.log()
    assert "spi_test.onnx" in log and "expected sha256" in log


def test_skips_inference_without_subscribers(lidar_card, ros_client, start_node):
    """With nobody listening to any output, scans are counted and skipped, not processed."""
    node = start_node("lidar_detector_node", params_file=REPO / "config/lidar_detector.yaml", namespace=NS,
                      params={"model_card": str(lidar_card), "diagnostics_period_s": 0.2})
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(PointCloud2, f"{NS}/points")
    ros_client.wait_for_subscribers(pub, timeout=120)
    for sec in range(300, 303):
        pub.publish(hdl32_scan_msg(sec))
        ros_client.spin_for(0.3)
    ros_client.spin_until(lambda: _diag_value(diags, "skipped_no_subscribers") == "3", 60, "3 skipped scans")
    assert _diag_value(diags, "processed") == "0"
    assert node.stop() == 0, node.log()
