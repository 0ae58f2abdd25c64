"""Launch files against reality: every node they start exists in the built workspace, every parameter file
exists, and every parameter in those files is declared by its node (checked on a running node process), where
every parameter that is not read-only can be set while the node runs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from glassbox.capabilities import all_capabilities, node_specs
from harness import REPO, find_executable

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def _table(path: Path, name: str):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def launch_nodes(path: Path) -> list[dict]:
    """The nodes a launch file starts: the suite's from the capability record (``node_specs``, which
    perception.launch.py reads), a file's own static NODES table, or for a file that includes another with a
    subset of nodes, that subset (read with ast: the `launch` package is not needed)."""
    if path.name == "perception.launch.py":
        assert "node_specs" in path.read_text(), "perception.launch.py no longer reads the capability record"
        return node_specs()
    nodes = _table(path, "NODES")
    if nodes is not None:
        return nodes
    include = _table(path, "INCLUDES")
    assert include is not None, f"{path.name} has neither a NODES nor an INCLUDES table"
    included = path.parent / include["launch"]
    assert included.is_file(), f"{path.name} includes missing {included.name}"
    wanted = set(include["nodes"].split(","))
    subset = [n for n in launch_nodes(included) if n.get("key") in wanted]
    assert len(subset) == len(wanted), f"{path.name}: nodes '{include['nodes']}' not all in {included.name}"
    return subset


def test_there_are_launch_files():
    assert LAUNCH_FILES, "launch/ is empty"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_nodes_and_parameter_files_exist(path):
    nodes = launch_nodes(path)
    assert nodes, f"{path.name} starts no node"
    for spec in nodes:
        find_executable(spec["package"], spec["executable"])     # raises when missing
        config = REPO / "config" / spec["config"]
        assert config.is_file(), f"{path.name}: parameter file {config} missing"
        data = yaml.safe_load(config.read_text())
        assert "ros__parameters" in next(iter(data.values())), f"{config} is not a ROS 2 parameter file"
        installed = Path(find_executable(spec["package"], spec["executable"])).parents[3]
        assert installed.exists()


def _declared_parameters(ros_client, node_fqn: str) -> set[str]:
    from rcl_interfaces.srv import ListParameters
    client = ros_client.node.create_client(ListParameters, f"{node_fqn}/list_parameters")
    ros_client.spin_until(lambda: client.service_is_ready(), 30, f"{node_fqn}/list_parameters")
    future = client.call_async(ListParameters.Request())
    ros_client.spin_until(future.done, 10, "list_parameters reply")
    return set(future.result().result.names)


CARD_OF = {c.node: c.name for c in all_capabilities()}


@pytest.mark.ros
def test_every_config_parameter_is_declared_by_its_node(ros_client, start_node, model_cards):
    specs = {(s["package"], s["executable"], s["name"], s["config"]) for p in LAUNCH_FILES for s in launch_nodes(p)}
    assert {e for _, e, _, _ in specs} >= set(CARD_OF) | {"entropy_monitor_node"}
    for package, executable, name, config in sorted(specs):
        params = {"model_card": str(model_cards[CARD_OF[executable]])} if executable in CARD_OF else {}
        start_node(executable, package=package, params_file=REPO / "config" / config, namespace="/lt", name=name,
                   params=params)
        declared = _declared_parameters(ros_client, f"/lt/{name}")
        params = next(iter(yaml.safe_load((REPO / "config" / config).read_text()).values()))["ros__parameters"]
        undeclared = sorted(set(params) - declared)
        assert not undeclared, f"config/{config} sets parameters {executable} does not declare: {undeclared}"
        _set_every_live_parameter(ros_client, f"/lt/{name}", sorted(declared))


def _set_every_live_parameter(ros_client, node_fqn: str, names: list[str]) -> None:
    """Set every parameter that is not read-only to the value it has (each one runs its setter in the node)."""
    from rcl_interfaces.srv import DescribeParameters
    client = ros_client.node.create_client(DescribeParameters, f"{node_fqn}/describe_parameters")
    ros_client.spin_until(lambda: client.service_is_ready(), 30, f"{node_fqn}/describe_parameters")
    future = client.call_async(DescribeParameters.Request(names=names))
    ros_client.spin_until(future.done, 10, "describe_parameters reply")
    live = [d.name for d in future.result().descriptors if not d.read_only and d.name != "use_sim_time"]
    assert live, f"{node_fqn} has no parameter that can change while it runs"
    values = ros_client.get_parameters(node_fqn, live)
    for name, value in values.items():
        (result,) = ros_client.set_parameters(node_fqn, {name: value})
        assert result.successful, f"{node_fqn}: setting {name} to its own value {value!r} failed: {result.reason}"
