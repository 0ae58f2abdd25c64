"""entropy_monitor_node with a recorded profile beside its model card: the profile overrides the card's reference
(OK on nominal profiles, ERROR on a fault, the fault class named from the signatures), and a profile recorded
for another model file stops the node with the reason."""
from __future__ import annotations

import time

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from glassbox_msgs.msg import EntropyProfile

from glassbox.models.card import EntropyReference, ModelCard, save_card
from harness import REPO

pytestmark = pytest.mark.ros
LAYERS = ("l0", "l1", "l2")


def _files(tmp_path, profile_sha):
    card = tmp_path / "toy.card.yaml"          # the card's own reference (synthetic data) is far from the robot's
    save_card(ModelCard(name="toy", task="toy", file="toy.onnx", sha256="a" * 64, entropy_reference=EntropyReference(
        "knn", {"k": "1"}, LAYERS, (50.0, 50.0, 50.0), (1.0, 1.0, 1.0), 10)), card)
    profile = tmp_path / "reference.yaml"      # what `glassbox profile` writes
    profile.write_text(yaml.safe_dump({"glassbox_profile": 1, "models": {"toy": {
        "card_sha256": profile_sha, "frames": 200, "sensors": ["/points"],
        "layers": {n: {"mean": m, "std": 0.5, "median": m, "robust_std": 0.5} for n, m in zip(LAYERS, (10, 8, 6))}}}}))
    sigs = tmp_path / "signatures.yaml"
    sigs.write_text(yaml.safe_dump({"signatures": {"toy": {"blocked_sector": {"l0": -8.0, "l1": 1.0, "l2": 0.0},
                                                           "rain_clutter": {"l0": 0.0, "l1": 9.0, "l2": 6.0}}}}))
    return [str(card), str(profile)], str(sigs)


def _profile(values) -> EntropyProfile:
    msg = EntropyProfile(model_name="toy", estimator="knn", layer_names=list(LAYERS))
    msg.entropy_nats = np.asarray(values, np.float64)
    msg.delta_nats = np.concatenate([[0.0], np.diff(values)])
    return msg


def _status(m):
    return next((s for s in m.status if s.name == "glassbox/entropy/toy"), None)


def test_recorded_profile_ok_on_nominal_error_on_fault_naming_it(tmp_path, ros_client, start_node):
    refs, sigs = _files(tmp_path, "a" * 64)
    node = start_node("entropy_monitor_node", params_file=REPO / "config/entropy_monitor.yaml",
                      params={"reference_files": refs, "fault_signatures": sigs, "entropy_topics": ["lidar/entropy"],
                              "publish_period_s": 0.2, "smoothing": 1.0}, namespace="/glassbox")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(EntropyProfile, "/glassbox/lidar/entropy")
    ros_client.wait_for_subscribers(pub, timeout=30)
    ros_client.publish_until(lambda: pub.publish(_profile([10.1, 7.9, 6.2])),
                             lambda: any(_status(m) for m in diags), what="a first status")
    ok = next(_status(m) for m in reversed(diags) if _status(m))
    assert ok.level == DiagnosticStatus.OK, ok.message           # against the card alone this would be ERROR
    diags.clear()
    pub.publish(_profile([10.0, 12.5, 9.0]))                      # l1 +9, l2 +6 sigma: the rain pattern
    ros_client.wait_for_messages("/diagnostics", timeout=20, predicate=lambda m: (s := _status(m)) is not None
                                 and s.level == DiagnosticStatus.ERROR)
    err = next(_status(m) for m in reversed(diags) if _status(m) and _status(m).level == DiagnosticStatus.ERROR)
    assert "likely fault: rain_clutter" in err.message
    assert {kv.key: kv.value for kv in err.values}["likely_fault"].startswith("rain_clutter:")
    assert node.stop() == 0, node.log()


def test_profile_of_another_model_file_is_refused_with_the_reason(tmp_path, start_node):
    refs, _ = _files(tmp_path, "b" * 64)
    node = start_node("entropy_monitor_node", params={"reference_files": refs})
    deadline = time.monotonic() + 30
    while node.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not node.alive()
    assert "recorded with the model whose sha256 is bbbbbbbbbbbb" in node.log()
