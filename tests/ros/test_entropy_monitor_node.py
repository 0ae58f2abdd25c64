"""entropy_monitor_node as a real process over DDS: OK on in-distribution profiles, WARN/ERROR naming layers."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from glassbox_msgs.msg import EntropyProfile

from harness import REPO

pytestmark = pytest.mark.ros


def _profile(values, layers=("l0", "l1", "l2")) -> EntropyProfile:
    msg = EntropyProfile(model_name="toy", estimator="knn", layer_names=list(layers))
    msg.header.frame_id = "sensor"
    msg.entropy_nats = np.asarray(values, np.float64)
    msg.delta_nats = np.concatenate([[0.0], np.diff(values)])
    return msg


def _status(msgs, name="glassbox/entropy/toy"):
    for m in reversed(msgs):
        for s in m.status:
            if s.name == name:
                return s
    return None


def test_monitor_node_ok_then_error_naming_the_layer(tmp_path, ros_client, start_node):
    ref = tmp_path / "ref.yaml"
    ref.write_text("models:\n  toy:\n    layers:\n"
                   "      l0: {mean: 10.0, std: 0.5}\n      l1: {mean: 8.0, std: 0.5}\n      l2: {mean: 6.0, std: 0.5}\n")
    node = start_node("entropy_monitor_node", params_file=REPO / "config/entropy_monitor.yaml",
                      params={"reference_files": [str(ref)], "entropy_topics": ["lidar/entropy"],
                              "publish_period_s": 0.2, "smoothing": 1.0},
                      namespace="/glassbox")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(EntropyProfile, "/glassbox/lidar/entropy")
    ros_client.wait_for_subscribers(pub, timeout=30)

    rng = np.random.default_rng(0)
    first = _profile([10.0, 8.0, 6.0])
    ros_client.publish_until(lambda: pub.publish(first), lambda: any(_status([m]) for m in diags),
                             what="a first status from the monitor")
    for _ in range(5):
        pub.publish(_profile([10.0, 8.0, 6.0] + rng.normal(0, 0.2, 3)))
        ros_client.spin_for(0.1)
    ros_client.wait_for_messages("/diagnostics", predicate=lambda m: _status([m]) is not None, timeout=20)
    ok = _status(diags)
    assert ok.level == DiagnosticStatus.OK, ok.message

    # Layer l1 drifts by 10 reference standard deviations: ERROR, and the message names l1.
    diags.clear()
    pub.publish(_profile([10.0, 13.0, 6.0]))
    ros_client.wait_for_messages("/diagnostics", timeout=20, predicate=lambda m: (s := _status([m])) is not None
                                 and s.level == DiagnosticStatus.ERROR)
    err = _status(diags)
    assert "l1" in err.message and "l0" not in err.message
    values = {kv.key: float(kv.value) for kv in err.values if kv.key.startswith("z/")}
    assert values["z/l1"] == pytest.approx(10.0, abs=1e-3)

    # A malformed profile (arrays shorter than the layer list) is rejected and counted; the node lives on.
    bad = _profile([10.0, 8.0, 6.0])
    bad.entropy_nats = np.array([1.0])
    pub.publish(bad)
    ros_client.wait_for_messages("/diagnostics", timeout=20, predicate=lambda m: any(
        s.name.endswith("/input") and "1 profile(s) rejected" in s.message for s in m.status))
    assert node.alive()
    diags.clear()
    pub.publish(_profile([10.0, 8.0, 6.0]))
    ros_client.wait_for_messages("/diagnostics", timeout=20, predicate=lambda m: (s := _status([m])) is not None
                                 and s.level != DiagnosticStatus.ERROR)
    assert node.stop() == 0, node.log()


def test_monitor_thresholds_change_live_and_a_bad_pair_is_refused(tmp_path, ros_client, start_node):
    ref = tmp_path / "ref.yaml"
    ref.write_text("models:\n  toy:\n    layers:\n      l0: {mean: 10.0, std: 0.5}\n      l1: {mean: 8.0, std: 0.5}\n")
    node = start_node("entropy_monitor_node", params_file=REPO / "config/entropy_monitor.yaml", namespace="/glassbox",
                      params={"reference_files": [str(ref)], "entropy_topics": ["lidar/entropy"],
                              "publish_period_s": 0.2, "smoothing": 1.0})
    name = "/glassbox/entropy_monitor"
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(EntropyProfile, "/glassbox/lidar/entropy")
    ros_client.wait_for_subscribers(pub, timeout=30)

    def at(sec: float, l1: float) -> EntropyProfile:
        msg = _profile([10.0, l1], layers=("l0", "l1"))
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(sec), int(round((sec % 1) * 1e9))
        return msg

    def level_becomes(level, what):
        diags.clear()
        ros_client.spin_until(lambda: (s := _status(diags)) is not None and s.level == level, 20, what)

    first = at(100, 10.0)                                                  # z(l1) = 4
    ros_client.publish_until(lambda: pub.publish(first), lambda: _status(diags) is not None)
    level_becomes(DiagnosticStatus.WARN, "WARN at z = 4 (warn_z 3)")
    (result,) = ros_client.set_parameters(name, {"warn_z": 5.0})
    assert result.successful, result.reason
    level_becomes(DiagnosticStatus.OK, "OK once warn_z is 5, without a new profile")

    # error_z below warn_z is refused with the reason, and the old value stays; both moved together are taken.
    (result,) = ros_client.set_parameters(name, {"error_z": 4.5})
    assert not result.successful and "warn_z < error_z" in result.reason, result.reason
    assert ros_client.get_parameters(name, ["warn_z", "error_z"]) == {"warn_z": 5.0, "error_z": 6.0}
    results = ros_client.set_parameters(name, {"warn_z": 2.0, "error_z": 3.5})
    assert all(r.successful for r in results), [r.reason for r in results]
    level_becomes(DiagnosticStatus.ERROR, "ERROR at z = 4 (error_z 3.5)")

    # A profile a little older than the last is rejected; one much older (a looped bag) restarts the model.
    pub.publish(at(99.5, 10.0))
    pub.publish(at(50, 8.0))
    ros_client.wait_for_messages("/diagnostics", timeout=20, predicate=lambda m: any(
        s.name.endswith("/input") and status_value(s, "rejected/stamp_backwards") == "1"
        and status_value(s, "time_jumps") == "1" for s in m.status))
    level_becomes(DiagnosticStatus.OK, "OK on the nominal profile after the restart")
    assert node.alive() and node.stop() == 0, node.log()


def status_value(status, key):
    return next((kv.value for kv in status.values if kv.key == key), None)
