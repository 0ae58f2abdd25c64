"""docs/parameters.md holds what the nodes declare: regenerated from the nodes' descriptors (every node class
started in-process with rclpy by scripts/param_tables.py), it must be unchanged, and every parameter has a
description."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness import REPO

pytestmark = pytest.mark.ros


def test_parameter_tables_are_up_to_date_with_the_nodes():
    run = subprocess.run([sys.executable, str(REPO / "scripts/param_tables.py"), "--check"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def test_every_node_and_parameter_is_documented():
    sys.path.insert(0, str(REPO / "scripts"))
    import param_tables
    doc = (REPO / "docs/parameters.md").read_text()
    rows = [line.split(" | ") for line in doc.splitlines() if line.startswith("| `")]
    assert len(rows) > 50
    assert all(r[-1].rstrip(" |") for r in rows), [r[0] for r in rows if not r[-1].rstrip(" |")]
    for executable, _ in param_tables.node_classes():
        assert f"### `{executable}`" in doc
