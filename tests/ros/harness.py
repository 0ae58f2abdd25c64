"""ROS 2 test harness: node executables as real processes, a test-side rclpy node, real DDS on loopback.

``NodeProcess`` starts an installed executable (found like ``ros2 run`` does, through AMENT_PREFIX_PATH) with a
parameter file, remappings and a namespace, logs to a file, and is always torn down (SIGINT, then SIGKILL).
``RosClient`` publishes inputs and waits for outputs with timeouts, spinning its own executor.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

REPO = Path(__file__).resolve().parents[2]


def find_executable(package: str, executable: str) -> Path:
    """``<prefix>/lib/<package>/<executable>`` for the first prefix of AMENT_PREFIX_PATH that has it."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(":"):
        path = Path(prefix) / "lib" / package / executable
        if prefix and path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"executable '{executable}' of package '{package}' not found in AMENT_PREFIX_PATH; "
                            "is the workspace built and sourced (make test does both)?")


class NodeProcess:
    """A node executable running as its own process."""

    def __init__(self, executable: str, *, package: str = "glassbox_ros", params_file: str | Path | None = None,
                 params: Mapping[str, Any] | None = None, remaps: Mapping[str, str] | None = None,
                 namespace: str | None = None, name: str | None = None, log_dir: Path | None = None):
        cmd = [str(find_executable(package, executable)), "--ros-args"]
        if params_file:
            cmd += ["--params-file", str(params_file)]
        for key, value in (params or {}).items():
            cmd += ["-p", f"{key}:={_param_text(value)}"]
        for src, dst in (remaps or {}).items():
            cmd += ["-r", f"{src}:={dst}"]
        if namespace:
            cmd += ["-r", f"__ns:={namespace}"]
        if name:
            cmd += ["-r", f"__node:={name}"]
        self.cmd = cmd
        self.log_path = (log_dir or Path("/tmp")) / f"{executable}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (clean shutdown), then SIGKILL of the whole process group if it does not exit."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class RosClient:
    """The test side: one rclpy node that publishes inputs and collects outputs."""

    def __init__(self, name: str = "glassbox_test_client"):
        if not rclpy.ok():
            rclpy.init()
        self.node = Node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}
        self._subs = {}

    def publisher(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE):
        return self.node.create_publisher(msg_type, topic, qos)

    def subscribe(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE) -> list:
        """Start collecting ``topic``; returns the live list of received messages."""
        if topic not in self._subs:
            self.received[topic] = []
            self._subs[topic] = self.node.create_subscription(msg_type, topic, self.received[topic].append, qos)
        return self.received[topic]

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            self.executor.spin_once(timeout_sec=0.05)
        if not condition():
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))

    def wait_for_subscribers(self, pub, count: int = 1, timeout: float = 20.0) -> None:
        self.spin_until(lambda: pub.get_subscription_count() >= count, timeout,
                        f"{count} subscriber(s) on {pub.topic_name}")

    def wait_for_publishers(self, topics: Sequence[str], timeout: float = 30.0) -> None:
        """Until every subscribed ``topic`` is matched with a publisher (discovery is not instantaneous)."""
        self.spin_until(lambda: all(self._subs[t].get_publisher_count() > 0 for t in topics), timeout,
                        f"publishers on {', '.join(topics)}")

    def wait_for_messages(self, topic: str, count: int = 1, timeout: float = 20.0,
                          predicate: Callable[[Any], bool] | None = None) -> list:
        msgs = self.received[topic]
        ok = (lambda: sum(1 for m in msgs if predicate(m)) >= count) if predicate else (lambda: len(msgs) >= count)
        self.spin_until(ok, timeout, f"{count} message(s) on {topic}")
        return [m for m in msgs if predicate(m)] if predicate else list(msgs)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def start_nodes(specs: Sequence[dict], log_dir: Path) -> list[NodeProcess]:
    return [NodeProcess(log_dir=log_dir, **spec) for spec in specs]
