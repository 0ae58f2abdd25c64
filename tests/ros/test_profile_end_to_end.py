"""`glassbox profile` end to end on the robot side: a profile recorded from nominal bags with the shipped LiDAR
model is loaded by the running entropy monitor node, which stays OK while the LiDAR node processes new nominal
scans of the recorded route and turns WARN/ERROR on scans with injected rain clutter."""
from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from glassbox_msgs.msg import EntropyProfile
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from glassbox import msg as gm
from glassbox.bag.typestore import make_typestore
from glassbox.cli import main
from glassbox.models.card import load_card
from glassbox.sim.camera import rgb_camera, thermal_camera
from glassbox.sim.drive import DriveConfig, write_drive
from glassbox.sim.scene import SceneConfig
from glassbox.stages.build import card_path_for
from glassbox_ros import converters as cv
from harness import REPO

pytestmark = pytest.mark.ros
LIDAR_TOPIC = "/sensors/lidar/points"


def _drive(folder, seed, faults=(), seconds=1.5, start_m=10.0):
    return write_drive(folder / f"drive{seed}_{start_m:g}{'_fault' if faults else ''}.mcap", DriveConfig(
        seconds=seconds, seed=seed, segments=("day",), scene=SceneConfig(ego_start_m=start_m),
        rgb=rgb_camera(width=64, height=48), thermal=thermal_camera(width=64, height=48), workers=1,
        faults=faults)).path


def _clouds(bag, offset_s: int = 0) -> list[PointCloud2]:
    """The bag's LiDAR scans as rclpy messages with their recorded stamps (moved by ``offset_s``) and frame."""
    out = []
    with AnyReader([bag], default_typestore=make_typestore()) as r:
        conns = [c for c in r.connections if c.topic == LIDAR_TOPIC]
        for c, _, raw in r.messages(connections=conns):
            m = r.deserialize(raw, c.msgtype)
            header = Header(frame_id=m.header.frame_id)
            header.stamp.sec, header.stamp.nanosec = m.header.stamp.sec + offset_s, m.header.stamp.nanosec
            out.append(cv.build.pointcloud2(gm.pointcloud2_to_array(m), header))
    return out


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    if not card_path_for("lidar").is_file():
        pytest.skip("shipped LiDAR model missing")
    folder = tmp_path_factory.mktemp("profile_e2e")
    profile = folder / "reference.yaml"
    nominal = [_drive(folder, s) for s in (11, 12)]
    assert main(["profile", *map(str, nominal), "--out", str(profile), "--capabilities", "lidar"]) == 0
    new_nominal = _drive(folder, 11, seconds=2.5, start_m=30.0)
    rain = _drive(folder, 11, faults=(("rain_clutter", 0.0, 10.0, 1.0),), seconds=1.0, start_m=30.0)
    return profile, _clouds(new_nominal), _clouds(rain, offset_s=10)   # played after the nominal scans


def test_recorded_profile_loaded_by_the_node_ok_on_nominal_alarm_on_fault(bags, ros_client, start_node):
    profile, nominal, rain = bags
    card = card_path_for("lidar")
    name = f"glassbox/entropy/{load_card(card).name}"
    start_node("lidar_detector_node", params_file=REPO / "config/lidar_detector.yaml", namespace="/glassbox/lidar",
               params={"skip_without_subscribers": False})
    start_node("entropy_monitor_node", params_file=REPO / "config/entropy_monitor.yaml", namespace="/glassbox",
               params={"reference_files": [str(card), str(profile)], "entropy_topics": ["lidar/entropy"],
                       "publish_period_s": 0.2})
    statuses: list[DiagnosticStatus] = []
    ros_client.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(
        s for s in m.status if s.name == name), 50)
    entropy = ros_client.subscribe(EntropyProfile, "/glassbox/lidar/entropy")
    pub = ros_client.publisher(PointCloud2, "/glassbox/lidar/points")
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.wait_for_publishers(["/glassbox/lidar/entropy"], timeout=120)

    def play(clouds):
        """One scan at a time: each is answered by its entropy profile before the next is sent."""
        levels = []
        for msg in clouds:
            n = len(entropy)
            ros_client.publish_until(lambda: pub.publish(msg), lambda: len(entropy) > n, timeout=60,
                                     what="the scan's entropy profile")
            statuses.clear()
            ros_client.spin_until(lambda: bool(statuses), timeout=20, what="a monitor status")
            levels.append(statuses[-1].level)
        return levels

    ok = play(nominal)
    assert DiagnosticStatus.ERROR not in ok and ok.count(DiagnosticStatus.OK) >= 0.9 * len(ok), ok
    faulty = play(rain)
    assert all(lv in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR) for lv in faulty[3:]), faulty
