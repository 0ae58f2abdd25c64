"""Container files, linted and checked against the repository (no Docker engine is needed)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint not installed (it is in requirements.txt; run make setup)"
    return exe


def test_both_images_exist():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.jetson", "Dockerfile.x86"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    res = subprocess.run([_hadolint(), "-c", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_entrypoint_is_set(dockerfile):
    text = dockerfile.read_text()
    for src in re.findall(r"^COPY\s+(\S+)\s+\S+", text, flags=re.M):
        assert (REPO / src).exists(), f"{dockerfile.name}: COPY source '{src}' does not exist"
    assert "ENTRYPOINT" in text and "colcon build" in text
    assert "vision-msgs" in text, "vision_msgs must come from the ROS apt repository in images"


def test_hadolint_catches_a_bad_file(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN cd /tmp && pip install numpy\n")
    res = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True)
    assert res.returncode != 0 and "DL3003" in res.stdout


def test_compose_services_have_host_network_gpu_and_volumes():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"glassbox-jetson", "glassbox-x86"}
    for name, svc in services.items():
        assert svc["network_mode"] == "host", name
        mounts = " ".join(svc["volumes"])
        for needed in ("models", "/var/cache/glassbox/trt", "/data/bags"):
            assert needed in mounts, f"{name}: no volume for {needed}"
        assert (DOCKER / svc["build"]["dockerfile"].split("/")[-1]).exists()
        assert svc["image"].split(":")[1] in (DOCKER / "README.md").read_text(), f"{name}: tag not in README table"
    assert services["glassbox-jetson"]["runtime"] == "nvidia"
    assert services["glassbox-x86"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_entrypoint_sources_ros_and_workspace():
    ep = DOCKER / "entrypoint.sh"
    text = ep.read_text()
    assert ep.stat().st_mode & 0o111, "entrypoint.sh is not executable"
    assert "/opt/ros/${ROS_DISTRO}/setup.bash" in text and "install/setup.bash" in text and 'exec "$@"' in text
    assert subprocess.run(["bash", "-n", str(ep)]).returncode == 0
