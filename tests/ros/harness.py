"""ROS 2 test harness: node executables as real processes, a test-side rclpy node, real DDS on loopback.

``NodeProcess`` starts an installed executable (found like ``ros2 run`` does, through AMENT_PREFIX_PATH) with a
parameter file, remappings and a namespace, logs to a file, and is always torn down (SIGINT, then SIGKILL).
``RosClient`` publishes inputs and waits for outputs with timeouts, spinning its own executor, and sets and reads
a running node's parameters through its parameter services.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from glassbox_ros.processes import NodeProcess, find_executable  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[2]


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

    def publish_until(self, send: Callable[[], None], condition: Callable[[], bool], timeout: float = 120.0,
                      period: float = 2.0, what: str = "a reply") -> int:
        """Call ``send()`` every ``period`` s until ``condition()``; returns how many times it was sent.

        A writer can see a reader before that reader has matched the writer, and best-effort samples sent in
        between are dropped by the reader: the first message of a test is therefore repeated until answered.
        """
        deadline = time.monotonic() + timeout
        sent = 0
        while time.monotonic() < deadline:
            send()
            sent += 1
            end = min(deadline, time.monotonic() + period)
            while time.monotonic() < end:
                if condition():
                    return sent
                self.executor.spin_once(timeout_sec=0.05)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def wait_for_messages(self, topic: str, count: int = 1, timeout: float = 20.0,
                          predicate: Callable[[Any], bool] | None = None) -> list:
        msgs = self.received[topic]
        ok = (lambda: sum(1 for m in msgs if predicate(m)) >= count) if predicate else (lambda: len(msgs) >= count)
        self.spin_until(ok, timeout, f"{count} message(s) on {topic}")
        return [m for m in msgs if predicate(m)] if predicate else list(msgs)

    def _call(self, srv_type: type, name: str, request: Any, timeout: float) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(client.service_is_ready, timeout, f"service {name}")
            future = client.call_async(request)
            self.spin_until(future.done, timeout, f"the reply of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node_fqn: str, values: dict[str, Any], timeout: float = 30.0) -> list:
        """Set parameters of a running node through its ``set_parameters`` service (what ``ros2 param set``
        does); one SetParametersResult per parameter."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return list(self._call(SetParameters, f"{node_fqn}/set_parameters", request, timeout).results)

    def get_parameters(self, node_fqn: str, names: Sequence[str], timeout: float = 30.0) -> dict[str, Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        reply = self._call(GetParameters, f"{node_fqn}/get_parameters", GetParameters.Request(names=list(names)),
                           timeout)
        return {n: parameter_value_to_python(v) for n, v in zip(names, reply.values)}

    def change_state(self, node_fqn: str, transition: int, timeout: float = 120.0) -> bool:
        """Trigger lifecycle ``transition`` (a lifecycle_msgs/msg/Transition id) through the node's
        ``change_state`` service (what ``ros2 lifecycle set`` does); whether it succeeded."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        request = ChangeState.Request(transition=Transition(id=transition))
        return self._call(ChangeState, f"{node_fqn}/change_state", request, timeout).success

    def lifecycle_state(self, node_fqn: str, timeout: float = 60.0) -> str:
        """The label of the node's lifecycle state (``unconfigured``, ``inactive``, ``active``, ``finalized``)."""
        from lifecycle_msgs.srv import GetState
        return self._call(GetState, f"{node_fqn}/get_state", GetState.Request(), timeout).current_state.label

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def hdl32_scan_msg(sec: int, frame_id: str = "lidar"):
    """A PointCloud2 of one HDL-32E scan of synthetic street 3 (x, y, z, intensity, ring, time), stamped ``sec``."""
    import numpy as np
    from std_msgs.msg import Header

    from glassbox import msg as gm
    from glassbox.sim import SceneConfig, lidar_preset, make_scene, scan_lidar
    from glassbox_ros import converters as cv
    scan = scan_lidar(make_scene(3, SceneConfig()), lidar_preset("hdl32"), np.eye(4), seed=3)
    cloud = gm.xyz_to_structured(scan.points, extra={"ring": scan.ring.astype(np.uint16), "time": scan.time})
    header = Header(frame_id=frame_id)
    header.stamp.sec = sec
    return cv.build.pointcloud2(cloud, header)
