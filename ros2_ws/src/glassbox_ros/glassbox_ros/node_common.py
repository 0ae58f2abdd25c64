"""What every glassbox perception node shares: parameter declaration, model resolution and diagnostics.

Nothing here touches tensors; it is the plumbing a node needs around its core pipeline.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from glassbox.models.card import ModelCard, load_card, verify_model_file


class ParameterValueError(ValueError):
    """A node parameter has a value outside its allowed set."""


def declare(node: Node, name: str, default: Any, description: str, *, lo: float | None = None,
            hi: float | None = None, choices: Sequence[str] | None = None, read_only: bool = False) -> Any:
    """Declare a parameter with a descriptor (description, range, read-only) and return its value."""
    desc = ParameterDescriptor(description=description + (f" (one of: {', '.join(choices)})" if choices else ""),
                               read_only=read_only)
    if lo is not None and hi is not None:
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi))]
    value = node.declare_parameter(name, default, desc).value
    if choices is not None:
        values = value if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in values if v not in choices]
        if bad:
            raise ParameterValueError(f"parameter '{name}': {bad[0]!r} is not one of {list(choices)}")
    return value


def shipped_models_dir() -> Path:
    """``share/glassbox_bringup/models`` of the installed workspace (where `ros2 launch` finds the models)."""
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory("glassbox_bringup")) / "models"


def resolve_model(card_path: str, default_card: str) -> tuple[Path, ModelCard, Path]:
    """Load a model card (``card_path`` or the shipped ``default_card``) and verify its model file's sha256.

    Raises ``ModelIntegrityError`` / ``ModelCardError`` naming the file and the expected hash: the node must
    not start on a model that is not the one its card describes. Nothing is ever downloaded.
    """
    path = Path(card_path) if card_path else shipped_models_dir() / default_card
    card = load_card(path)
    return path, card, verify_model_file(path)


class NodeDiagnostics:
    """Input rate, processing latency (mean, p95), rejections by reason, and backend facts -> /diagnostics."""

    def __init__(self, node: Node, period_s: float = 1.0, window: int = 200):
        self.node = node
        self.name = node.get_fully_qualified_name()
        self.arrivals: collections.deque[float] = collections.deque(maxlen=window)
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.rejected: collections.Counter[str] = collections.Counter()
        self.skipped_no_subscribers = 0
        self.processed_count = 0
        self.info: dict[str, str] = {}
        self.warnings: list[str] = []     # lasting conditions (e.g. an execution provider fallback)
        self.state = ""                   # the node's current degraded state, if any ("" = nominal)
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = node.create_timer(period_s, self.publish)

    def input_received(self) -> None:
        self.arrivals.append(time.monotonic())

    def processed(self, latency_ms: float) -> None:
        self.processed_count += 1
        self.latencies_ms.append(latency_ms)

    def reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        self.node.get_logger().warning(f"rejected input ({reason}): {detail}", throttle_duration_sec=2.0)

    def rate_hz(self) -> float:
        if len(self.arrivals) < 2:
            return 0.0
        span = self.arrivals[-1] - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0

    def status(self) -> DiagnosticStatus:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        level = DiagnosticStatus.OK
        message = "ok"
        if self.warnings or self.state:
            level, message = DiagnosticStatus.WARN, "; ".join(self.warnings + ([self.state] if self.state else []))
        elif self.rejected:
            level = DiagnosticStatus.WARN
            message = f"{sum(self.rejected.values())} input(s) rejected"
        values = [KeyValue(key="input_rate_hz", value=f"{self.rate_hz():.2f}"),
                  KeyValue(key="latency_mean_ms", value=f"{lat.mean():.2f}"),
                  KeyValue(key="latency_p95_ms", value=f"{np.percentile(lat, 95):.2f}"),
                  KeyValue(key="processed", value=str(self.processed_count)),
                  KeyValue(key="skipped_no_subscribers", value=str(self.skipped_no_subscribers))]
        values += [KeyValue(key=f"rejected/{reason}", value=str(n)) for reason, n in sorted(self.rejected.items())]
        values += [KeyValue(key=k, value=v) for k, v in self.info.items()]
        return DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=self.name, values=values)

    def publish(self) -> None:
        out = DiagnosticArray()
        out.header.stamp = self.node.get_clock().now().to_msg()
        out.status.append(self.status())
        self.pub.publish(out)


def has_subscribers(publishers: Sequence[Any]) -> bool:
    return any(p.get_subscription_count() > 0 for p in publishers)


class PerceptionNode(Node):
    """Base of the perception nodes: common parameters, the stage's subscriptions and publishers, one callback.

    A subclass declares its own parameters, builds its pipeline and stage, then calls :meth:`start`.
    """

    def __init__(self, capability: str):
        from glassbox.capabilities import get
        record = get(capability)
        default_card = record.default_card
        super().__init__(record.node_name)
        self.capability = capability
        self.model_card_path = declare(self, "model_card", "", "model card YAML; empty = the shipped "
                                       f"{default_card} in share/glassbox_bringup/models", read_only=True)
        self.backend = declare(self, "backend", "onnxruntime", "inference backend", choices=("onnxruntime", "torch"),
                               read_only=True)
        self.providers = tuple(declare(self, "providers", ["cpu"], "ONNX Runtime execution providers, tried in "
                                       "order (a loud warning on fallback)", choices=("cpu", "cuda", "tensorrt"),
                                       read_only=True))
        self.device = declare(self, "device", "cpu", "torch device for the torch backend (cpu, cuda, cuda:1)",
                              read_only=True)
        self.threads = declare(self, "threads", 0, "intra-op threads of the backend (0 = library default)",
                               lo=0, hi=256, read_only=True)
        self.entropy_enabled = declare(self, "entropy.enabled", True, "publish per-layer entropy profiles")
        self.entropy_every_n = declare(self, "entropy.every_n", 1, "estimate the entropy profile every N-th frame",
                                       lo=1, hi=1000)
        self.skip_without_subscribers = declare(
            self, "skip_without_subscribers", True, "skip inference while no output topic has a subscriber")
        self.diag_period_s = declare(self, "diagnostics_period_s", 1.0, "period of /diagnostics, s", lo=0.05, hi=60.0)
        self.card_file, self.card, self.model_file = resolve_model(self.model_card_path, default_card)
        self.diag: NodeDiagnostics | None = None
        self.pubs: dict[str, Any] = {}

    def build_pipeline(self, **overrides: Any) -> Any:
        """The core pipeline from the verified model card and this node's backend / entropy parameters.

        Execution providers that were asked for but are not available are reported loudly (log and
        diagnostics), never silently replaced.
        """
        from glassbox.stages.build import build_pipeline
        pipeline, _ = build_pipeline(self.capability, self.card_file, backend=self.backend, providers=self.providers,
                                     device=self.device, threads=self.threads, entropy_enabled=self.entropy_enabled,
                                     entropy_every_n=self.entropy_every_n, **overrides)
        self.providers_in_use = ",".join(pipeline.runtime.providers)
        self.provider_warnings = list(pipeline.runtime.warnings)
        for w in self.provider_warnings:
            self.get_logger().error(f"execution provider fallback: {w}")
        return pipeline

    def start(self, stage: Any, extra_info: dict[str, str] | None = None) -> None:
        """Publish the stage's outputs (reliable) and its latched topics (reliable, transient local: published
        once, kept for late subscribers), subscribe its capability's inputs (sensor data QoS; camera streams as
        ``glassbox_ros.camera_io`` says) and start the diagnostics. Each input message goes to :meth:`on_input`."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        from glassbox.capabilities import get
        from glassbox_ros.camera_io import subscribe_inputs
        from glassbox_ros.converters import RclpyFactory
        self.stage = stage
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pubs = {suffix: self.create_publisher(RclpyFactory._cls(typename), suffix, reliable)
                     for suffix, typename in stage.outputs.items()}
        self.latched_pubs = {suffix: self.create_publisher(RclpyFactory._cls(typename), suffix, latched)
                             for suffix, typename in stage.latched.items()}
        for suffix, msg in stage.latched_messages(self.get_clock().now().nanoseconds).items():
            self.latched_pubs[suffix].publish(msg)
        self.subs, input_info = subscribe_inputs(self, get(stage.capability).inputs, self.on_input,
                                                 qos_profile_sensor_data)
        self.diag = NodeDiagnostics(self, self.diag_period_s)
        self.diag.info.update({"model": self.card.name, "model_file": str(self.model_file), "backend": self.backend,
                               "providers": getattr(self, "providers_in_use", ""), **input_info,
                               **(extra_info or {})})
        self.diag.warnings = list(getattr(self, "provider_warnings", []))
        self.get_logger().info(f"{self.card.name} ({self.backend}) ready; publishing {', '.join(self.pubs)}")

    def on_input(self, role: str, msg: Any) -> None:
        """The callback of every input: count, skip when nobody listens, feed the stage, publish what it gives."""
        from glassbox.msg import ConversionError
        self.diag.input_received()
        if self.skip_without_subscribers and not has_subscribers(list(self.pubs.values())):
            self.diag.skipped_no_subscribers += 1
            return
        t0 = time.perf_counter()
        try:
            out = self.stage.feed(role, msg, self.get_clock().now().nanoseconds)
        except ConversionError as exc:
            self.diag.reject(exc.reason, str(exc))
            return
        finally:
            self.diag.state = self.stage.state
            self.diag.info.update(self.stage.info())
        if out is None:
            return
        for suffix, out_msg in out.messages.items():
            self.pubs[suffix].publish(out_msg)
        self.diag.processed((time.perf_counter() - t0) * 1e3)


def run_node(node_cls: type, args: Any = None) -> None:
    """``main()`` of every node: start, spin, shut down cleanly (Humble, Jazzy and Kilted).

    A model that fails its sha256 check, or a bad parameter, stops the node at start with the reason.
    """
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException

    from glassbox.models.card import ModelCardError, ModelIntegrityError
    rclpy.init(args=args)
    node = None
    try:
        node = node_cls()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ModelIntegrityError, ModelCardError, ParameterValueError, FileNotFoundError) as exc:
        rclpy.logging.get_logger(node_cls.__name__).fatal(f"cannot start: {exc}")
        sys.exit(1)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
