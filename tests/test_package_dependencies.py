"""Every third-party import of a workspace package is declared in its package.xml by its rosdep key, so that
`rosdep install --from-paths ros2_ws/src` on a robot installs what the nodes, the core and the trainer import."""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "ros2_ws/src"
PYTHON_PACKAGES = ("glassbox", "glassbox_ros", "glassbox_trainer")
# import name -> rosdep key (Debian/Ubuntu python3-* keys where rosdep has one, pip keys "*-pip" otherwise);
# ROS packages are their own keys.
ROSDEP_KEY = {"numpy": "python3-numpy", "yaml": "python3-yaml", "scipy": "python3-scipy", "cv2": "python3-opencv",
              "matplotlib": "python3-matplotlib", "torch": "python3-torch", "tqdm": "python3-tqdm",
              "skimage": "python3-skimage", "onnx": "python3-onnx-pip", "onnxruntime": "python3-onnxruntime-pip",
              "open3d": "python3-open3d-pip", "rosbags": "python3-rosbags-pip"}
# optional extras (setup.py extras_require), imported only by the features that need them
OPTIONAL = {"ray"}


def third_party_imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (SRC / package / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {package} - OPTIONAL


def declared(package: str, kinds=("depend", "exec_depend")) -> set[str]:
    root = ET.parse(SRC / package / "package.xml").getroot()
    return {e.text.strip() for kind in kinds for e in root.iter(kind)}


@pytest.mark.parametrize("package", PYTHON_PACKAGES)
def test_every_import_is_a_declared_run_dependency(package):
    keys = {ROSDEP_KEY.get(name, name) for name in third_party_imports(package)}
    missing = sorted(keys - declared(package))
    assert not missing, f"{package}/package.xml does not declare (as exec_depend) the run dependencies {missing}"


def test_the_import_scan_sees_lazy_imports():
    # the core imports torch and onnxruntime only inside functions: the scan must still find them
    assert {"torch", "onnxruntime", "open3d", "cv2"} <= third_party_imports("glassbox")


def test_bringup_runs_what_its_launch_files_import():
    assert {"launch", "launch_ros", "ament_index_python", "glassbox_ros", "glassbox"} <= declared("glassbox_bringup")
