"""The launch files run by the real ROS 2 launch system (``launch.LaunchService``, what ``ros2 launch`` runs):
the suite starts every node with remapped sensor topics, answers on them, applies its large-data Fast DDS
profile itself, and shuts down cleanly on SIGINT; bad arguments fail with a clear message."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness import REPO

pytestmark = pytest.mark.ros

# Found, not imported: importing `launch` installs its own logger class process-wide (loggers created later stop
# propagating), and the launch system only ever runs in the launched subprocess anyway.
try:
    import importlib.util

    from ament_index_python.packages import get_package_share_directory
    for name in ("launch", "launch_ros", "composition_interfaces"):
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"no module named '{name}'")
    SHARE = Path(get_package_share_directory("glassbox_bringup"))
    SKIP = ""
except Exception as exc:   # noqa: BLE001 - any reason the launch system is unusable is a reason to skip
    SKIP = (f"the ROS 2 launch system is not available ({exc}); it comes from a ROS install or from the wheels "
            "the set-up installs from $GLASSBOX_ROS_WHEELS (default ../shared/wheels)")
    SHARE = Path()

# What `ros2 launch FILE a:=b ...` does, without ros2cli.
RUNNER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
args = [tuple(a.split(':=', 1)) for a in sys.argv[2:]]
service = LaunchService(argv=sys.argv[2:])
service.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource(sys.argv[1]),
                                                            launch_arguments=args))
sys.exit(service.run())
"""
LOCAL_PROFILE = REPO / "config/dds/fastdds_local_large_data.xml"


def _launch(tmp_path: Path, launch_file: str, *args: str) -> tuple[subprocess.Popen, Path]:
    """Start a launch file of the installed glassbox_bringup; the launch applies its own DDS profile (the one
    that keeps DDS on loopback, passed as its argument), so the environment's is removed."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")}
    log = tmp_path / f"{launch_file}.log"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(SHARE / "launch" / launch_file),
                             f"dds_profile:={LOCAL_PROFILE}", *args],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, log


def _stop(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9
    return proc.returncode


def _scan_msg():
    from std_msgs.msg import Header

    from glassbox.msg import xyz_to_structured
    from glassbox.sim import SceneConfig, lidar_preset, make_scene, scan_lidar
    from glassbox_ros.converters import build
    scan = scan_lidar(make_scene(3, SceneConfig()), lidar_preset("hdl32"), np.eye(4), seed=3)
    header = Header(frame_id="lidar")
    header.stamp.sec = 5
    return build.pointcloud2(xyz_to_structured(scan.points, extra={"ring": scan.ring.astype(np.uint16)}), header)


def _image_msg():
    from std_msgs.msg import Header

    from glassbox_ros.converters import build
    rgb = np.random.default_rng(0).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec = 5
    return build.image(rgb, "rgb8", header)


@pytest.mark.slow
@pytest.mark.skipif(bool(SKIP), reason=SKIP)
def test_suite_launch_starts_every_node_answers_and_stops_cleanly(tmp_path, ros_client):
    from glassbox_msgs.msg import EntropyProfile
    from sensor_msgs.msg import Image, PointCloud2
    from vision_msgs.msg import Detection3DArray

    from glassbox.capabilities import node_specs
    from harness import RELIABLE
    proc, log = _launch(tmp_path, "perception.launch.py", "namespace:=lt", "points_topic:=/lt_in/points",
                        "camera_topic:=/lt_in/image", "thermal_topic:=/lt_in/thermal")
    try:
        expected = {f"/lt/{s['sub_namespace']}/{s['name']}".replace("//", "/") for s in node_specs()}
        ros_client.spin_until(
            lambda: expected <= {f"{ns.rstrip('/')}/{n}" for n, ns in ros_client.node.get_node_names_and_namespaces()}
            or proc.poll() is not None, 180, f"nodes {sorted(expected)}")
        assert proc.poll() is None, f"launch exited early:\n{log.read_text()[-3000:]}"
        ros_client.subscribe(Detection3DArray, "/lt/lidar/detections")
        ros_client.subscribe(EntropyProfile, "/lt/segmentation/entropy")
        points = ros_client.publisher(PointCloud2, "/lt_in/points", RELIABLE)
        image = ros_client.publisher(Image, "/lt_in/image", RELIABLE)
        scan, frame = _scan_msg(), _image_msg()
        ros_client.publish_until(lambda: (points.publish(scan), image.publish(frame)),
                                 lambda: ros_client.received["/lt/lidar/detections"]
                                 and ros_client.received["/lt/segmentation/entropy"], timeout=180,
                                 what="detections on the remapped LiDAR topic and segmentation of refined images")
        assert ros_client.received["/lt/lidar/detections"][0].header.frame_id == "lidar"
        text = log.read_text()
        assert f"Fast DDS profile: {LOCAL_PROFILE}" in text
    finally:
        code = _stop(proc)
    assert code == 0, f"launch did not shut down cleanly on SIGINT (exit {code}):\n{log.read_text()[-3000:]}"


@pytest.mark.skipif(bool(SKIP), reason=SKIP)
def test_lifecycle_argument_starts_a_managed_node(tmp_path, ros_client):
    """``lifecycle:=true`` reaches the node through a single-node launch file: it waits unconfigured, is driven
    to active through its lifecycle services, and the launch still shuts down cleanly."""
    from lifecycle_msgs.msg import Transition
    from sensor_msgs.msg import PointCloud2
    proc, log = _launch(tmp_path, "lidar_detector.launch.py", "namespace:=lc", "lifecycle:=true",
                        "points_topic:=/lc_in/points")
    node = "/lc/lidar/lidar_detector"
    try:
        points = ros_client.publisher(PointCloud2, "/lc_in/points")
        assert ros_client.lifecycle_state(node, timeout=180) == "unconfigured", log.read_text()[-3000:]
        assert points.get_subscription_count() == 0
        assert ros_client.change_state(node, Transition.TRANSITION_CONFIGURE), log.read_text()[-3000:]
        assert ros_client.change_state(node, Transition.TRANSITION_ACTIVATE), log.read_text()[-3000:]
        assert ros_client.lifecycle_state(node) == "active"
        ros_client.wait_for_subscribers(points, timeout=120)
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]


@pytest.mark.skipif(bool(SKIP), reason=SKIP)
@pytest.mark.parametrize("args, message", [
    (("nodes:=lidar,radar",), "unknown node 'radar'"),
    (("nodes:=lidar", "models_dir:=/nonexistent/models"), "model card /nonexistent/models/spi_lidar.card.yaml not found"),
], ids=["unknown-node", "missing-model"])
def test_bad_launch_arguments_fail_with_a_clear_message(tmp_path, args, message):
    proc, log = _launch(tmp_path, "perception.launch.py", *args)
    try:
        code = proc.wait(120)
    finally:
        _stop(proc)
    assert code != 0 and message in log.read_text(), log.read_text()[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(bool(SKIP), reason=SKIP)
@pytest.mark.parametrize("launch_file", sorted(p.name for p in (REPO / "launch").glob("*.launch.py")
                                                if p.name != "perception.launch.py"))
def test_single_node_launch_files_start_their_node(tmp_path, ros_client, launch_file):
    import ast

    from glassbox.capabilities import node_specs
    tables = {getattr(n.targets[0], "id", ""): ast.literal_eval(n.value)
              for n in ast.parse((REPO / "launch" / launch_file).read_text()).body if isinstance(n, ast.Assign)}
    if "INCLUDES" in tables:
        spec = next(s for s in node_specs() if s["key"] == tables["INCLUDES"]["nodes"])
    else:
        spec = {"sub_namespace": "", **tables["NODES"][0]}
    want = f"/lt1/{spec['sub_namespace']}/{spec['name']}".replace("//", "/")
    proc, log = _launch(tmp_path, launch_file, "namespace:=lt1")
    try:
        ros_client.spin_until(
            lambda: want in {f"{ns.rstrip('/')}/{n}" for n, ns in ros_client.node.get_node_names_and_namespaces()}
            or proc.poll() is not None, 120, want)
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
