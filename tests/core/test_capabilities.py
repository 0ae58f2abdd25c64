"""The capability record against the files it names, and a plug-in capability added through the table alone."""
from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from glassbox import capabilities
from glassbox.capabilities import Capability, CapabilityError, Stream

REPO = Path(__file__).resolve().parents[2]
BUILTIN = ("lidar", "refiner", "segmentation", "fusion")


def test_builtin_records_name_files_that_exist():
    assert capabilities.names()[:4] == BUILTIN
    for cap in capabilities.all_capabilities():
        assert cap.load_stage().__name__.endswith("Stage"), cap.stage
        assert hasattr(cap.load_pipeline(), "from_card"), f"{cap.pipeline} has no from_card"
        if cap.report:
            assert callable(capabilities.load(cap.report))
        params = yaml.safe_load((REPO / "config" / cap.params_file).read_text())
        assert "ros__parameters" in next(iter(params.values())), cap.params_file
        assert (REPO / "models" / cap.default_card).is_file(), cap.default_card
        assert {"entropy"} <= set(cap.outputs), f"{cap.name} publishes no entropy profile"
        assert all(s.role in capabilities.ROLE_LAUNCH_ARGS for s in cap.inputs)


def test_every_capability_node_has_its_module():
    # that the built workspace installs each executable is checked by tests/ros/test_launch_files.py
    for cap in capabilities.all_capabilities():
        assert (REPO / "ros2_ws/src/glassbox_ros/glassbox_ros" / f"{cap.node}.py").is_file(), cap.node


def _tasks_of(config: Path) -> set[str]:
    """The ``task:`` of a training config: at its top level or in any of its sections."""
    data = yaml.safe_load(config.read_text()) or {}
    return {d.get("task") for d in [data, *data.values()] if isinstance(d, dict)} - {None}


def test_every_capability_names_a_trainer_task_with_a_config():
    from glassbox_trainer.task import task_class
    for cap in capabilities.all_capabilities():
        cls = task_class(cap.train_task)
        assert cls.name == cap.train_task
        configs = [p for p in (REPO / "config/train").glob("*.yaml") if cap.train_task in _tasks_of(p)]
        assert configs, f"no config/train/*.yaml trains task '{cap.train_task}'"


def test_unknown_names_and_bad_paths_are_clear_errors():
    with pytest.raises(CapabilityError, match="unknown capability 'radar' .*known: lidar, refiner"):
        capabilities.get("radar")
    with pytest.raises(CapabilityError, match="not a 'module:attribute' path"):
        capabilities.load("glassbox.stages")
    with pytest.raises(CapabilityError, match="cannot load 'glassbox.stages:NoSuchStage'"):
        capabilities.load("glassbox.stages:NoSuchStage")
    with pytest.raises(CapabilityError, match="already registered"):
        capabilities.register(capabilities.get("lidar"))


def test_the_launch_table_is_the_capability_table():
    specs = capabilities.node_specs()
    assert [s["key"] for s in specs] == [*capabilities.names(), "monitor"]
    fusion = next(s for s in specs if s["key"] == "fusion")
    assert fusion["remappings"] == [("rgb/image", "camera_topic"), ("thermal/image", "thermal_topic")]
    assert fusion["executable"] == "fusion_node" and fusion["config"] == "fusion.yaml"
    # the suite launch file reads the table instead of listing nodes (parsed: no `launch` package needed)
    tree = ast.parse((REPO / "launch/perception.launch.py").read_text())
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    assert "NODES" not in assigned


TOY_MODULE = """
from glassbox.capabilities import Capability, Stream, register
register(Capability(
    name="toy_brightness", task="measurement", inputs=(Stream("image", "sensor_msgs/msg/Image", "rgb"),),
    outputs={"entropy": "glassbox_msgs/msg/EntropyProfile"},
    stage="glassbox.stages.camera:RefinerStage", pipeline="glassbox.pipelines.refiner:RefinerPipeline",
    default_card="refiner.card.yaml", node="toy_node", node_name="toy", namespace="toy",
    params_file="image_refiner.yaml", train_task="refiner", title="Toy brightness"))
"""


@pytest.fixture
def toy_capability(tmp_path, monkeypatch):
    """A capability registered from a module of its own, named in $GLASSBOX_CAPABILITIES."""
    (tmp_path / "toy_capability.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GLASSBOX_CAPABILITIES", "toy_capability")
    yield "toy_brightness"
    capabilities.CAPABILITIES.pop("toy_brightness", None)
    capabilities._PLUGINS_LOADED.discard("toy_capability")
    sys.modules.pop("toy_capability", None)


def test_a_plugin_capability_is_registered_and_launchable(toy_capability):
    cap = capabilities.get(toy_capability)
    assert isinstance(cap, Capability) and cap.inputs == (Stream("image", "sensor_msgs/msg/Image", "rgb"),)
    spec = next(s for s in capabilities.node_specs() if s["key"] == toy_capability)
    assert spec["executable"] == "toy_node" and spec["remappings"] == [("image", "camera_topic")]
    assert capabilities.node_specs()[-1]["key"] == "monitor"


def test_a_plugin_module_that_does_not_import_is_named(monkeypatch):
    monkeypatch.setenv("GLASSBOX_CAPABILITIES", "no_such_capability_module")
    try:
        with pytest.raises(CapabilityError, match="GLASSBOX_CAPABILITIES names 'no_such_capability_module'"):
            capabilities.names()
    finally:
        capabilities._PLUGINS_LOADED.discard("no_such_capability_module")
