"""A perception node (the LiDAR detector) as a real process, on what a robot needs of it: parameters changed live
through the SetParameters service (and refused with the reason, keeping the old value), a looped sequence of
stamps, diagnostics judged over a window of inputs and on the node clock, and QoS overrides from a parameter
file."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from glassbox_msgs.msg import EntropyProfile
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from glassbox import msg as gm
from glassbox.pipelines.lidar import LidarDetectionPipeline
from glassbox.sim import LidarConfig, SceneConfig, make_scene, scan_lidar
from glassbox_ros import converters as cv
from harness import REPO

pytestmark = pytest.mark.ros
NS, NODE = "/glassbox/lidar", "/glassbox/lidar/lidar_detector"
PARAMS = {"diagnostics_period_s": 0.2, "skip_without_subscribers": False}


@pytest.fixture(scope="module")
def cloud(lidar_card):
    """One scan in the test model's own sensor geometry (its card's profile): the node fits it as it is, so no
    resampling condition of its own shows in the diagnostics."""
    profile = LidarDetectionPipeline.from_card(lidar_card, threads=1).fit.profile
    scan = scan_lidar(make_scene(3, SceneConfig()), LidarConfig.from_profile(profile), np.eye(4), seed=3)
    return gm.xyz_to_structured(scan.points, extra={"ring": scan.ring.astype(np.uint16)})


def _scan(cloud, sec: float) -> PointCloud2:
    header = Header(frame_id="lidar")
    header.stamp.sec, header.stamp.nanosec = int(sec), int(round((sec % 1) * 1e9))
    return cv.build.pointcloud2(cloud, header)


def _stamp_s(msg) -> float:
    return gm.stamp_to_ns(msg.header.stamp) * 1e-9


class Lidar:
    """The node under test and the test's side of its topics."""

    def __init__(self, ros_client, start_node, card, params_file=REPO / "config/lidar_detector.yaml", **params):
        self.client = ros_client
        self.node = start_node("lidar_detector_node", params_file=params_file, namespace=NS,
                               params={"model_card": str(card), **PARAMS, **params})
        self.dets = ros_client.subscribe(Detection3DArray, f"{NS}/detections")
        self.entropy = ros_client.subscribe(EntropyProfile, f"{NS}/entropy")
        self.diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
        self.pub = ros_client.publisher(PointCloud2, f"{NS}/points")
        ros_client.wait_for_subscribers(self.pub, timeout=120)
        ros_client.wait_for_publishers([f"{NS}/detections", f"{NS}/entropy"], timeout=120)

    def first(self, msg) -> Detection3DArray:
        """Send ``msg`` until answered (discovery, see RosClient.publish_until); its detections."""
        t = _stamp_s(msg)
        self.client.publish_until(lambda: self.pub.publish(msg), lambda: any(_stamp_s(m) == t for m in self.dets))
        return next(m for m in self.dets if _stamp_s(m) == t)

    def send(self, msg, answered: bool = True) -> Detection3DArray | None:
        """Send ``msg`` once and wait for its detections (or give it time to be judged, when not ``answered``)."""
        t = _stamp_s(msg)
        seen = sum(_stamp_s(m) == t for m in self.dets)
        self.pub.publish(msg)
        if not answered:
            self.client.spin_for(0.5)
            return None
        return self.client.wait_for_messages(f"{NS}/detections", count=seen + 1, timeout=60,
                                             predicate=lambda m: _stamp_s(m) == t)[-1]

    def statuses(self) -> list[DiagnosticStatus]:
        return [s for m in self.diags for s in m.status if s.name == NODE]

    def status_where(self, condition, what: str, timeout: float = 30.0) -> DiagnosticStatus:
        self.client.spin_until(lambda: any(condition(s) for s in self.statuses()), timeout, what)
        return next(s for s in self.statuses() if condition(s))


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _stops_cleanly(lidar: Lidar) -> bool:
    return lidar.node.alive() and lidar.node.stop() == 0


def test_parameters_change_live_and_bad_values_are_refused(lidar_card, cloud, ros_client, start_node):
    lidar = Lidar(ros_client, start_node, lidar_card, score_threshold=0.0)
    scores0 = np.sort(gm.detection3d_array_to_numpy(lidar.first(_scan(cloud, 10))).scores)
    assert len(scores0) >= 4, "the untrained model gives too few boxes at threshold 0 to compare"

    # A score threshold between two scores of the threshold-0 boxes keeps exactly the boxes above it: NMS only
    # ever lets a stronger box suppress a weaker one, so raising the threshold cannot bring a box back.
    t = float(scores0[len(scores0) // 2 - 1] + scores0[len(scores0) // 2]) / 2
    (result,) = ros_client.set_parameters(NODE, {"score_threshold": t})
    assert result.successful, result.reason
    scores_t = np.sort(gm.detection3d_array_to_numpy(lidar.send(_scan(cloud, 11))).scores)
    assert len(scores_t) == int((scores0 >= t).sum()) < len(scores0)
    np.testing.assert_allclose(scores_t, scores0[scores0 >= t], rtol=1e-6)

    # entropy.every_n 1 -> 5: one entropy profile per scan, then one per five scans.
    def profiles_for(first_sec: int, n: int) -> list[bool]:
        for sec in range(first_sec, first_sec + n):
            lidar.send(_scan(cloud, sec))
        ros_client.spin_for(0.5)
        stamps = {_stamp_s(m) for m in lidar.entropy}
        return [float(sec) in stamps for sec in range(first_sec, first_sec + n)]
    assert all(profiles_for(20, 5))
    (result,) = ros_client.set_parameters(NODE, {"entropy.every_n": 5})
    assert result.successful, result.reason
    probed = [i for i, p in enumerate(profiles_for(30, 10)) if p]
    assert len(probed) == 2 and probed[1] - probed[0] == 5, probed

    # Refused, with the reason, the old value staying: out of range (descriptor), read-only, and a constraint
    # between two parameters (checked on the values the request would leave, whatever their order).
    for values, reason in (({"nms_iou": 2.0}, "out of range"), ({"model_card": "/elsewhere.yaml"}, "read-only"),
                           ({"diagnostics.dead_input_warn_s": 20.0}, "dead_input_warn_s < dead_input_error_s")):
        results = ros_client.set_parameters(NODE, values)
        assert not any(r.successful for r in results) and reason in results[0].reason, results[0].reason
    assert ros_client.get_parameters(NODE, ["nms_iou", "diagnostics.dead_input_warn_s", "score_threshold"]) == \
        {"nms_iou": -1.0, "diagnostics.dead_input_warn_s": 2.0, "score_threshold": t}
    results = ros_client.set_parameters(NODE, {"diagnostics.dead_input_error_s": 40.0,
                                               "diagnostics.dead_input_warn_s": 20.0})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert _stops_cleanly(lidar)


def test_a_looped_sequence_of_stamps_resumes_at_the_first_repeated_frame(lidar_card, cloud, ros_client, start_node):
    lidar = Lidar(ros_client, start_node, lidar_card)
    lidar.first(_scan(cloud, 100))
    for sec in (101, 102):
        lidar.send(_scan(cloud, sec))
    # The bag starts again (ros2 bag play --loop): 2 s back, more than time_jump_threshold_s (1 s).
    assert _stamp_s(lidar.send(_scan(cloud, 100))) == 100.0
    lidar.send(_scan(cloud, 101))
    # A small reordering is still rejected, with its reason.
    lidar.send(_scan(cloud, 100.5), answered=False)
    status = lidar.status_where(lambda s: _values(s)["rejected/stamp_backwards"] == "1", "the rejection")
    assert _values(status)["time_jumps"] == "1"
    said = [s.message for s in lidar.statuses() if "jumped back" in s.message]
    assert len(said) == 1 and "lidar stamp jumped back 2.00 s" in said[0], said    # said once
    assert _stops_cleanly(lidar)


def test_diagnostics_warn_on_a_bad_input_until_a_window_of_good_ones_and_on_a_dead_input(
        lidar_card, cloud, ros_client, start_node):
    lidar = Lidar(ros_client, start_node, lidar_card, **{"diagnostics.window": 3, "expected_rate_hz": 0.0,
                                                         "diagnostics.dead_input_warn_s": 60.0,
                                                         "diagnostics.dead_input_error_s": 120.0})
    lidar.first(_scan(cloud, 200))
    ok = lidar.status_where(lambda s: _values(s)["processed"] != "0", "a status after the first scan")
    assert (ok.level, ok.message, ok.hardware_id) == (DiagnosticStatus.OK, "ok", "lidar"), ok.message
    assert _values(ok)["sensor/rows"] == "ring"                      # the model's own rows: nothing resampled
    empty = cv.build.pointcloud2(cloud[:0], Header(frame_id="lidar"))
    empty.header.stamp.sec = 201
    lidar.send(empty, answered=False)
    warn = lidar.status_where(lambda s: _values(s)["rejected/empty"] == "1", "the rejection in diagnostics")
    # The first scan may have been sent, and run, more than once (RosClient.publish_until): the good inputs before
    # the bad one are counted by the status that reports it (nothing else was sent since).
    base = int(_values(warn)["processed"])
    assert (warn.level, warn.message) == (DiagnosticStatus.WARN, f"1 of the last {min(3, base + 1)} inputs rejected")
    # window 3: [bad, good, good] still WARN, [good, good, good] OK again. A status is a snapshot taken every
    # diagnostics_period_s, and two scans can be judged within one period: each scan's status is awaited before
    # the next scan is sent.
    for k, sec in enumerate((202, 203, 204), 1):
        lidar.send(_scan(cloud, sec))
        status = lidar.status_where(lambda s: _values(s)["processed"] == str(base + k),
                                    f"a status after {k} good scans")
        expected = (DiagnosticStatus.WARN, "1 of the last 3 inputs rejected") if k < 3 else (DiagnosticStatus.OK, "ok")
        assert (status.level, status.message) == expected, (k, status.message)

    # The input stops: WARN after dead_input_warn_s, ERROR after dead_input_error_s (set live, node clock).
    results = ros_client.set_parameters(NODE, {"diagnostics.dead_input_warn_s": 1.0,
                                               "diagnostics.dead_input_error_s": 3.0})
    assert all(r.successful for r in results), [r.reason for r in results]
    warn = lidar.status_where(lambda s: s.level == DiagnosticStatus.WARN and "no lidar input for" in s.message,
                              "a dead-input WARN")
    error = lidar.status_where(lambda s: s.level == DiagnosticStatus.ERROR, "a dead-input ERROR")
    assert "no lidar input for" in error.message
    assert lidar.statuses().index(warn) < lidar.statuses().index(error)
    assert _stops_cleanly(lidar)


def test_qos_overrides_from_a_parameter_file(lidar_card, ros_client, start_node, tmp_path):
    params = tmp_path / "qos.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"qos_overrides": {
        f"{NS}/points": {"subscription": {"reliability": "reliable", "depth": 2}},
        f"{NS}/markers": {"publisher": {"reliability": "best_effort"}}}}}}))
    lidar = Lidar(ros_client, start_node, lidar_card, params_file=params)
    (sub,) = ros_client.node.get_subscriptions_info_by_topic(f"{NS}/points")
    (pub,) = ros_client.node.get_publishers_info_by_topic(f"{NS}/markers")
    assert sub.qos_profile.reliability == ReliabilityPolicy.RELIABLE           # sensor data (best effort) by default
    assert pub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT        # reliable by default
    # What it means: a best-effort sensor driver no longer matches the node's reliable subscription.
    best_effort = ros_client.publisher(PointCloud2, f"{NS}/points", QoSProfile(
        depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    ros_client.spin_for(3.0)
    assert best_effort.get_subscription_count() == 0 and lidar.pub.get_subscription_count() == 1
    values = ros_client.get_parameters(NODE, [f"qos_overrides.{NS}/points.subscription.depth"])
    assert values == {f"qos_overrides.{NS}/points.subscription.depth": 2}
    assert _stops_cleanly(lidar)
