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
