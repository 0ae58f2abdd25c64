"""entropy_monitor_node: per-layer entropy of every model held against its reference profile -> /diagnostics.

Subscribes to the EntropyProfile topics named by ``entropy_topics``; each profile updates the core
``glassbox.monitor.EntropyMonitor``; one DiagnosticStatus per model (OK / WARN / ERROR / STALE, the worst
layers named, every layer's smoothed z-score as a key/value) is published on ``/diagnostics`` every
``publish_period_s`` (node clock) and at once when a model's level changes. The thresholds, smoothing and
periods change while it runs (a change of threshold is judged at once). A profile stamp jumping back by more than
``time_jump_threshold_s`` (a looped bag) resets that model's smoothed state; a smaller step back is rejected.
"""
from __future__ import annotations

import collections
from dataclasses import replace
from functools import partial

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from glassbox_msgs.msg import EntropyProfile
from rclpy.node import Node

from glassbox.monitor import EntropyMonitor, Level, MonitorConfig, load_references, load_signatures
from glassbox.msg import REASONS, ConversionError, entropy_profile_from_msg
from glassbox.sync import StampGuard
from glassbox_ros.node_common import (LiveParameters, ParameterValueError, declare, overridable, reliable_qos,
                                      run_node, sensor_qos)

_LEVEL_BYTES = {Level.OK: DiagnosticStatus.OK, Level.WARN: DiagnosticStatus.WARN,
                Level.ERROR: DiagnosticStatus.ERROR, Level.STALE: DiagnosticStatus.STALE}

#: MonitorConfig field (= parameter name) -> (lo, hi, description)
MONITOR_PARAMETERS = {
    "warn_z": (0.1, 1000.0, "|z| from which a layer is WARN (< error_z)"),
    "error_z": (0.1, 1000.0, "|z| from which a layer is ERROR (> warn_z)"),
    "smoothing": (0.01, 1.0, "EMA weight of the newest z-score"),
    "hysteresis": (0.1, 1.0, "a level is left below hysteresis*threshold"),
    "min_std_nats": (0.0, 1e6, "floor on reference std, nats"),
    "stale_after_s": (0.1, 3600.0, "silence (node clock) before a model is STALE, s"),
}


class EntropyMonitorNode(Node):
    def __init__(self) -> None:
        super().__init__("entropy_monitor")
        self.live = LiveParameters(self)
        topics = declare(self, "entropy_topics", ["entropy"], "EntropyProfile topics to watch (relative names "
                         "resolve in the node's namespace)", read_only=True)
        files = declare(self, "reference_files", [""], "YAML files with reference profiles: model cards and/or "
                        "profiles recorded by `glassbox profile` (a profile overrides its model's card; one recorded "
                        "for another model file is refused)", read_only=True)
        signatures = declare(self, "fault_signatures", "", "YAML of fault signatures (config/fault_signatures.yaml):"
                             " WARN/ERROR statuses name the nearest fault class; empty: none", read_only=True)
        d = MonitorConfig()
        for name, (lo, hi, text) in MONITOR_PARAMETERS.items():
            declare(self, name, getattr(d, name), text, lo=lo, hi=hi, on_set=lambda _v: self.monitor.configure(
                self.monitor_config(self.live.value)))
        period = declare(self, "publish_period_s", 1.0, "period of /diagnostics, s (node clock)", lo=0.05, hi=60.0,
                         on_set=self.set_period)
        self.stamps = StampGuard(declare(
            self, "time_jump_threshold_s", 1.0, "a profile stamp older than the previous one of its topic and model "
            "by more than this resets the model's smoothed state; by less it is rejected (stamp_backwards), s",
            lo=0.0, hi=1e6, on_set=lambda v: setattr(self.stamps, "jump_threshold_s", v)))
        try:
            cfg = self.monitor_config(lambda name: self.get_parameter(name).value, d)
        except ValueError as exc:
            raise ParameterValueError(str(exc)) from None
        files = [f for f in files if f]
        self.monitor = EntropyMonitor(load_references(files), cfg, load_signatures(signatures) if signatures else None)
        self.rejected: collections.Counter[str] = collections.Counter()
        self.notes: list[str] = []
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(),
                                              qos_overriding_options=overridable())
        self.subs = [self.create_subscription(EntropyProfile, topic, partial(self.on_profile, topic), sensor_qos(),
                                              qos_overriding_options=overridable()) for topic in topics]
        self.timer = self.create_timer(period, self.publish)
        self.get_logger().info(f"watching {len(self.subs)} entropy topic(s) against references of "
                               f"{sorted(self.monitor.references)}")

    def monitor_config(self, value, base: MonitorConfig | None = None) -> MonitorConfig:
        """The monitor's settings with every parameter of MONITOR_PARAMETERS read by ``value(name)``."""
        return replace(base or self.monitor.cfg, **{name: value(name) for name in MONITOR_PARAMETERS})

    def set_period(self, period_s: float) -> None:
        self.destroy_timer(self.timer)
        self.timer = self.create_timer(period_s, self.publish)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_profile(self, topic: str, msg: EntropyProfile) -> None:
        try:
            prof = entropy_profile_from_msg(msg)
            if self.stamps.check(f"{topic}:{prof.model_name}", prof.stamp_ns):
                self.monitor.reset(prof.model_name)
                self.notes.append(f"{prof.model_name} profiles on {topic} jumped back {self.stamps.last_jump[1]:.2f}"
                                  " s: its smoothed state reset")
                self.get_logger().warning(self.notes[-1])
        except ConversionError as exc:
            self.rejected[exc.reason] += 1
            self.get_logger().warning(f"rejected EntropyProfile ({exc.reason}): {exc}", throttle_duration_sec=5.0)
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
        if self.rejected or self.notes:
            n = sum(self.rejected.values())
            message = "; ".join(([f"{n} profile(s) rejected"] if n else []) + self.notes)
            self.notes = []
            out.status.append(DiagnosticStatus(
                level=DiagnosticStatus.WARN if n else DiagnosticStatus.OK,
                name=f"{self.get_fully_qualified_name()}/input", message=message,
                hardware_id=self.get_fully_qualified_name(),
                values=[KeyValue(key=f"rejected/{r}", value=str(self.rejected[r])) for r in REASONS] +
                [KeyValue(key="time_jumps", value=str(self.stamps.jumps))]))
        self.diag_pub.publish(out)


def main(args=None) -> None:
    run_node(EntropyMonitorNode, args)


if __name__ == "__main__":
    main()
