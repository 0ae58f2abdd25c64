"""ROS test fixtures: the built workspace must be on the path (``make test`` builds and sources it)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))


def _require_workspace() -> None:
    try:
        import glassbox_msgs.msg  # noqa: F401
        import rclpy  # noqa: F401
        import vision_msgs.msg  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            f"ROS 2 workspace not on the path ({exc}); run the tests with `make test`, which builds "
            "ros2_ws and sources ros2_ws/install/local_setup.bash") from exc


_require_workspace()


@pytest.fixture(scope="session")
def rosbags_typestore():
    """A rosbags typestore with the standard ROS 2 types plus glassbox_msgs and vision_msgs."""
    from glassbox.bag.typestore import make_typestore
    return make_typestore()


@pytest.fixture
def ros_client():
    """A test-side rclpy node; rclpy is shut down after the test."""
    import rclpy

    from harness import RosClient
    client = RosClient()
    yield client
    client.close()
    rclpy.try_shutdown()


@pytest.fixture
def start_node(tmp_path):
    """Factory: start a node executable as a process; every process is torn down after the test."""
    from harness import NodeProcess
    procs = []

    def start(executable: str, **kwargs):
        proc = NodeProcess(executable, log_dir=tmp_path, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.stop()
        # Captured by pytest and shown only when the test fails.
        print(f"----- {' '.join(p.cmd)}\n{p.log()[-4000:]}")


@pytest.fixture(scope="session")
def lidar_card(tmp_path_factory) -> Path:
    from support_models import make_lidar_card
    return make_lidar_card(tmp_path_factory.mktemp("lidar_model"))


@pytest.fixture(scope="session")
def model_cards(tmp_path_factory, lidar_card) -> dict[str, Path]:
    """Cards of untrained models for every capability (node plumbing tests; quality uses the shipped models)."""
    from support_models import make_camera_card
    folder = tmp_path_factory.mktemp("camera_models")
    cards = {cap: make_camera_card(cap, folder) for cap in ("refiner", "segmentation", "fusion")}
    return {"lidar": lidar_card, **cards}
