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


def make_lidar_card(folder: Path, height: int = 32, width: int = 512) -> Path:
    """A model card + ONNX file of an untrained SPI network (deterministic weights): enough to exercise a node
    end to end; detection quality is tested with the shipped model."""
    import torch

    from glassbox.lidar.decode import DecodeConfig
    from glassbox.lidar.projection import ProjectionConfig
    from glassbox.lidar.spi import SpiConfig, build_model
    from glassbox.models.card import ModelCard, save_card, sha256_file
    from glassbox.pipelines.lidar import card_extra, export_spi_onnx

    torch.manual_seed(0)
    proj = ProjectionConfig(height=height, width=width)
    spi = SpiConfig()
    model = build_model("spi", spi)
    onnx_path = folder / "spi_test.onnx"
    spec = export_spi_onnx(model, onnx_path, height, width)
    card = ModelCard(name="spi_test", task="lidar_detection", file=onnx_path.name, sha256=sha256_file(onnx_path),
                     inputs=spec["inputs"], outputs=tuple(spec["outputs"]), features=tuple(spec["features"]),
                     classes=("car", "pedestrian", "cyclist"),
                     extra=card_extra(proj, spi, DecodeConfig(score_threshold=0.05)))
    return save_card(card, folder / "spi_test.card.yaml")


@pytest.fixture(scope="session")
def lidar_card(tmp_path_factory) -> Path:
    return make_lidar_card(tmp_path_factory.mktemp("lidar_model"))
