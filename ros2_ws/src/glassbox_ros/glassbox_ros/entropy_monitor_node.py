"""entropy_monitor_node: per-layer entropy of every model held against its reference profile -> /diagnostics.

Subscribes to the EntropyProfile topics named by ``entropy_topics``; each profile updates the core
``glassbox.monitor.EntropyMonitor``; one DiagnosticStatus per model (OK / WARN / ERROR / STALE, the worst
layers named, every layer's smoothed z-score as a key/value) is published on ``/diagnostics`` every
``publish_period_s`` and at once when a model's level changes.
"""
from __future__ import annotations

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from glassbox_msgs.msg import EntropyProfile
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from glassbox.monitor import (EntropyMonitor, Level, MonitorConfig, ReferenceProfileError, load_references,
                              load_signatures)
from glassbox.msg import ConversionError, entropy_profile_from_msg

_LEVEL_BYTES = {Level.OK: DiagnosticStatus.OK, Level.WARN: DiagnosticStatus.WARN,
                Level.ERROR: DiagnosticStatus.ERROR, Level.STALE: DiagnosticStatus.STALE}


def _float(description: str, lo: float, hi: float) -> ParameterDescriptor:
    return ParameterDescriptor(description=description,
                               floating_point_range=[FloatingPointRange(from_value=lo, to_value=hi)])


class EntropyMonitorNode(Node):
    def __init__(self) -> None:
        super().__init__("entropy_monitor")
        d = MonitorConfig()
        self.declare_parameter("entropy_topics", ["entropy"], ParameterDescriptor(
            description="EntropyProfile topics to watch (relative names resolve in the node's namespace)",
            read_only=True))
        self.declare_parameter("reference_files", [""], ParameterDescriptor(
            description="YAML files with reference profiles: model cards and/or profiles recorded by `glassbox "
                        "profile` (a profile overrides its model's card; one recorded for another model file is "
                        "refused)", read_only=True))
        self.declare_parameter("fault_signatures", "", ParameterDescriptor(
            description="YAML of fault signatures (config/fault_signatures.yaml): WARN/ERROR statuses name the "
                        "nearest fault class; empty: none", read_only=True))
        self.declare_parameter("warn_z", d.warn_z, _float("|z| from which a layer is WARN", 0.1, 1000.0))
        self.declare_parameter("error_z", d.error_z, _float("|z| from which a layer is ERROR", 0.1, 1000.0))
        self.declare_parameter("smoothing", d.smoothing, _float("EMA weight of the newest z-score", 0.01, 1.0))
        self.declare_parameter("hysteresis", d.hysteresis, _float("a level is left below hysteresis*threshold",
                                                                  0.1, 1.0))
        self.declare_parameter("min_std_nats", d.min_std_nats, _float("floor on reference std, nats", 0.0, 1e6))
        self.declare_parameter("stale_after_s", d.stale_after_s, _float("silence before a model is STALE, s",
                                                                        0.1, 3600.0))
        self.declare_parameter("publish_period_s", 1.0, _float("period of /diagnostics, s", 0.05, 60.0))

        p = {name: self.get_parameter(name).value for name in
             ("warn_z", "error_z", "smoothing", "hysteresis", "min_std_nats", "stale_after_s")}
        files = [f for f in self.get_parameter("reference_files").value if f]
        signatures = self.get_parameter("fault_signatures").value
        try:
            self.monitor = EntropyMonitor(load_references(files), MonitorConfig(**p),
                                          load_signatures(signatures) if signatures else None)
        except ReferenceProfileError as exc:
            self.get_logger().fatal(f"cannot load the reference profiles: {exc}")
            raise
        self.rejected: dict[str, int] = {}
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.subs = [self.create_subscription(EntropyProfile, topic, self.on_profile, qos_profile_sensor_data)
                     for topic in self.get_parameter("entropy_topics").value]
        self.timer = self.create_timer(self.get_parameter("publish_period_s").value, self.publish)
        self.get_logger().info(f"watching {len(self.subs)} entropy topic(s) against references of "
                               f"{sorted(self.monitor.references)}")

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_profile(self, msg: EntropyProfile) -> None:
        try:
            prof = entropy_profile_from_msg(msg)
        except ConversionError as exc:
            self.rejected["malformed_profile"] = self.rejected.get("malformed_profile", 0) + 1
            self.get_logger().warning(f"rejected EntropyProfile: {exc}", throttle_duration_sec=5.0)
            return
        before = {h.model_name: h.level for h in self.monitor.states()}
        health = self.monitor.update(prof.model_name, prof.layer_names, prof.entropy_nats, prof.stamp_ns,
                                     self._now_s())
        if before.get(prof.model_name) != health.level:
            self.publish()

    def publish(self) -> None:
        out = DiagnosticArray()
        out.header.stamp = self.get_clock().now().to_msg()
        for h in self.monitor.states(self._now_s()):
            values = [KeyValue(key="frames", value=str(h.frames))]
            values += [KeyValue(key=f"z/{layer}", value=f"{z:+.3f}") for layer, z in h.z_scores.items()]
            if h.unknown_layers:
                values.append(KeyValue(key="layers_without_reference", value=",".join(h.unknown_layers)))
            if h.likely_fault is not None:
                values.append(KeyValue(key="likely_fault", value=f"{h.likely_fault[0]}:{h.likely_fault[1]:.2f}"))
            out.status.append(DiagnosticStatus(level=_LEVEL_BYTES[h.level], name=f"glassbox/entropy/{h.model_name}",
                                               message=h.message, hardware_id=self.get_fully_qualified_name(),
                                               values=values))
        if self.rejected:
            out.status.append(DiagnosticStatus(
                level=DiagnosticStatus.WARN, name=f"{self.get_fully_qualified_name()}/input",
                message=f"{sum(self.rejected.values())} malformed profile(s) rejected",
                hardware_id=self.get_fully_qualified_name(),
                values=[KeyValue(key=f"rejected/{k}", value=str(v)) for k, v in self.rejected.items()]))
        self.diag_pub.publish(out)


def main(args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = EntropyMonitorNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
