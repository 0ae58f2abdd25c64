"""ROS test fixtures: the built workspace must be on the path (``make test`` builds and sources it)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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
