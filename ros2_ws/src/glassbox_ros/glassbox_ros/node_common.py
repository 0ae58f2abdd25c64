"""What every glassbox node shares: parameters (declared with descriptors, changed live), QoS, model resolution
and diagnostics.

Nothing here touches tensors; it is the plumbing a node needs around its core pipeline.

- Parameters: :func:`declare` gives every parameter a descriptor; one that is not read-only names the setter that
  applies a new value while the node runs, and :class:`LiveParameters` (one ``add_on_set_parameters_callback``)
  calls it, or refuses the request with the setter's reason and keeps the old value.
- QoS: every subscription and publisher takes ``qos_overrides./<topic>.<publisher|subscription>.<policy>``
  parameters (history, depth, reliability) from a parameter file (rclpy ``QoSOverridingOptions``).
- Diagnostics: :class:`NodeDiagnostics`, one DiagnosticStatus per node, built the way ``diagnostic_updater`` does
  (a level from the worst condition, all conditions of that level in the message, fixed key-values).
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from glassbox.models.card import ModelCard, load_card, verify_model_file


class ParameterValueError(ValueError):
    """A node parameter has a value outside its allowed set."""


class LiveParameters:
    """The parameters a node changes while it runs: name -> setter, applied by one on-set-parameters callback.

    ``setter(value)`` applies a new value or raises ``ValueError`` with the reason it is refused. ``value(name)`` is
    what a parameter will be once the request being applied succeeds, so that a setter can check a constraint
    between parameters (``warn_z < error_z``) whatever their order in one request. A refused request is undone
    (the setters already run get the old values back) and answered with ``successful=False`` and the reason.
    Names without a setter (read-only ones, which rclpy refuses itself, and rclpy's own such as ``use_sim_time``)
    are left alone. While ``ready()`` is false (a managed node not configured yet) values are only checked against
    their choices and kept; :meth:`apply` hands them to the setters once what they set exists.
    """

    def __init__(self, node: Node, ready: Callable[[], bool] = lambda: True):
        self.node, self.ready = node, ready
        self.setters: dict[str, Callable[[Any], None]] = {}
        self.choices: dict[str, Sequence[str]] = {}
        self._pending: dict[str, Any] = {}
        node.add_on_set_parameters_callback(self._on_set)

    def add(self, name: str, setter: Callable[[Any], None], choices: Sequence[str] | None = None) -> None:
        self.setters[name] = setter
        if choices is not None:
            self.choices[name] = choices

    def apply(self) -> None:
        """Call every setter with its parameter's current value."""
        for name, setter in self.setters.items():
            setter(self.node.get_parameter(name).value)

    def value(self, name: str) -> Any:
        return self._pending[name] if name in self._pending else self.node.get_parameter(name).value

    def _on_set(self, params: list) -> SetParametersResult:
        live = [p for p in params if p.name in self.setters]
        self._pending = {p.name: p.value for p in live}
        done: list[str] = []
        try:
            for p in live:
                bad = _not_in_choices(p.value, self.choices.get(p.name))
                if bad is not None:
                    raise ValueError(f"{bad!r} is not one of {list(self.choices[p.name])}")
                if self.ready():
                    self.setters[p.name](p.value)
                    done.append(p.name)
        except ValueError as exc:
            self._pending = {}
            for name in reversed(done):
                self.setters[name](self.node.get_parameter(name).value)
            self.node.get_logger().warning(f"parameter '{p.name}' refused: {exc}")
            return SetParametersResult(successful=False, reason=f"{p.name}: {exc}")
        finally:
            self._pending = {}
        for p in live:
            self.node.get_logger().info(f"parameter '{p.name}' set to {p.value!r}")
        return SetParametersResult(successful=True)


def _not_in_choices(value: Any, choices: Sequence[str] | None) -> Any:
    """The first item of ``value`` (a value or a list) not in ``choices``, or None."""
    if choices is None:
        return None
    return next((v for v in (value if isinstance(value, (list, tuple)) else [value]) if v not in choices), None)


def declare(node: Node, name: str, default: Any, description: str, *, lo: float | None = None,
            hi: float | None = None, choices: Sequence[str] | None = None, read_only: bool = False,
            on_set: Callable[[Any], None] | None = None) -> Any:
    """Declare a parameter with a descriptor (description, range, choices as ``additional_constraints``,
    read-only) and return its value; ``scripts/param_tables.py`` writes ``docs/parameters.md`` from them.

    A parameter is either ``read_only`` or changes while the node runs through ``on_set(value)``, registered in
    ``node.live`` (a :class:`LiveParameters`); rclpy refuses values outside the range, ``on_set`` is only called
    with values inside it and in ``choices``.
    """
    if read_only == (on_set is not None):
        raise TypeError(f"parameter '{name}': a parameter that is not read-only needs on_set, a read-only one none")
    desc = ParameterDescriptor(description=description, read_only=read_only,
                               additional_constraints=f"one of: {', '.join(choices)}" if choices else "")
    if lo is not None and hi is not None:
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi))]
    value = node.declare_parameter(name, default, desc).value
    bad = _not_in_choices(value, choices)
    if bad is not None:
        raise ParameterValueError(f"parameter '{name}': {bad!r} is not one of {list(choices)}")
    if on_set is not None:
        node.live.add(name, on_set, choices)
    return value


def sensor_qos() -> QoSProfile:
    """Sensor-data QoS (best effort, keep last 5, volatile), a new profile each time: QoS overrides edit the
    profile they are given, so the shared ``qos_profile_sensor_data`` must not be."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def reliable_qos(depth: int = 10) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def overridable() -> QoSOverridingOptions:
    """History, depth and reliability of the entity overridable by ``qos_overrides.<topic>...`` parameters."""
    return QoSOverridingOptions.with_default_policies()


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


@dataclass(frozen=True)
class DiagnosticsConfig:
    """How a node judges its inputs (parameter names in :data:`DIAGNOSTICS_PARAMETERS`)."""

    window: int = 30                 # the last N inputs: rejections, rate and latencies are judged over them
    expected_rate_hz: float = 0.0    # per input stream; 0 = not checked
    rate_tolerance: float = 0.5      # WARN when a stream's rate is off expected_rate_hz by more than this fraction
    dead_input_warn_s: float = 2.0   # a stream silent this long (node clock) is WARN ...
    dead_input_error_s: float = 10.0  # ... and this long ERROR

    def __post_init__(self) -> None:
        if not 0 < self.dead_input_warn_s < self.dead_input_error_s:
            raise ValueError(f"need 0 < dead_input_warn_s < dead_input_error_s, got {self.dead_input_warn_s}, "
                             f"{self.dead_input_error_s}")


#: field -> (parameter name, lo, hi, description)
DIAGNOSTICS_PARAMETERS = {
    "window": ("diagnostics.window", 1, 10000, "inputs over which rejections, input rate and latencies are judged: a "
               "rejected input keeps the status WARN until this many good ones followed"),
    "expected_rate_hz": ("expected_rate_hz", 0.0, 10000.0, "expected rate of each input stream, Hz; 0 = not checked"),
    "rate_tolerance": ("diagnostics.rate_tolerance", 0.0, 10.0, "WARN when an input stream's rate is off "
                       "expected_rate_hz by more than this fraction of it"),
    "dead_input_warn_s": ("diagnostics.dead_input_warn_s", 0.01, 86400.0, "an input stream silent this long (node "
                          "clock) makes the status WARN, s"),
    "dead_input_error_s": ("diagnostics.dead_input_error_s", 0.01, 86400.0, "... and this long ERROR, s "
                           "(> diagnostics.dead_input_warn_s)"),
}


def _mean_p95(values: Sequence[float]) -> tuple[str, str]:
    if not values:
        return "nan", "nan"
    a = np.asarray(values)
    return f"{a.mean():.2f}", f"{np.percentile(a, 95):.2f}"


class NodeDiagnostics:
    """One DiagnosticStatus for a node on ``/diagnostics`` every ``diagnostics_period_s`` (node clock).

    ``hardware_id`` is the frame_id of the inputs last seen. The level is the worst of: an execution provider
    fallback or a degraded stage (WARN); a rejected input among the last ``diagnostics.window`` (WARN, OK again
    after a window of good input); an input stream silent for ``diagnostics.dead_input_warn_s`` (WARN) or
    ``diagnostics.dead_input_error_s`` (ERROR); a stream's rate off ``expected_rate_hz`` (WARN). The message
    names every condition of that level; a stamp jump (a stream's time restarting) is named once. Values: per
    stream input rate, processing latency and stamp-to-publish latency (node clock minus the header stamp) mean
    and p95, processed / skipped / dropped counts, rejections for every reason of ``glassbox.msg.REASONS``, time
    jumps, execution providers in use and any fallback, and the node's facts (model, backend, ...). While
    ``paused`` names a lifecycle state (a managed node not active) the status is OK with that state as its
    message, and inputs are not judged; :meth:`resume` judges them again from then on.
    """

    def __init__(self, node: Node, roles: Sequence[str], expected_rate_hz: float = 0.0):
        from glassbox.msg import REASONS
        self.node, self.roles, self.reasons = node, tuple(roles), REASONS
        self.name = node.get_fully_qualified_name()
        names = {f: spec[0] for f, spec in DIAGNOSTICS_PARAMETERS.items()}
        defaults = DiagnosticsConfig(expected_rate_hz=expected_rate_hz)
        for f, (name, lo, hi, text) in DIAGNOSTICS_PARAMETERS.items():
            declare(node, name, getattr(defaults, f), text, lo=lo, hi=hi,
                    on_set=lambda _v: self.configure(DiagnosticsConfig(**{k: node.live.value(n)
                                                                           for k, n in names.items()})))
        try:
            self.cfg = DiagnosticsConfig(**{f: node.get_parameter(n).value for f, n in names.items()})
        except ValueError as exc:
            raise ParameterValueError(str(exc)) from None
        period = declare(node, "diagnostics_period_s", 1.0, "period of /diagnostics, s (node clock)", lo=0.05,
                         hi=60.0, on_set=self.set_period)
        self.arrivals = {r: collections.deque(maxlen=self.cfg.window) for r in self.roles}   # node clock, ns
        self.outcomes: collections.deque[bool] = collections.deque(maxlen=self.cfg.window)  # True = rejected
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=self.cfg.window)
        self.stamp_latencies_ms: collections.deque[float] = collections.deque(maxlen=self.cfg.window)
        self.frame_ids: dict[str, str] = {}
        self.rejected: collections.Counter[str] = collections.Counter()
        self.skipped_no_subscribers = self.processed_count = self.dropped = self.time_jumps = 0
        self.info: dict[str, str] = {}
        self.warnings: list[str] = []     # lasting conditions (e.g. an execution provider fallback)
        self.state = ""                   # the node's current degraded state, if any ("" = nominal)
        self.notes: list[str] = []        # said once, in the next status
        self.paused = ""                  # the lifecycle state while the node does not process ("" = active)
        self.started_ns: int | None = None
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(),
                                         qos_overriding_options=overridable())
        self.timer = node.create_timer(period, self.publish)

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def configure(self, cfg: DiagnosticsConfig) -> None:
        self.cfg = cfg
        for name in ("outcomes", "latencies_ms", "stamp_latencies_ms"):
            setattr(self, name, collections.deque(getattr(self, name), maxlen=cfg.window))
        self.arrivals = {r: collections.deque(a, maxlen=cfg.window) for r, a in self.arrivals.items()}

    def resume(self) -> None:
        """Judge inputs again, their silence counted from now."""
        self.paused, self.started_ns = "", None
        for a in self.arrivals.values():
            a.clear()

    def set_period(self, period_s: float) -> None:
        self.node.destroy_timer(self.timer)
        self.timer = self.node.create_timer(period_s, self.publish)

    # ------------------------------------------------------------------------------------------- events
    def input_received(self, role: str, frame_id: str) -> None:
        now, arrivals = self.now_ns(), self.arrivals[role]
        if arrivals and now < arrivals[-1]:          # the clock went back (a bag replayed in a loop with --clock)
            arrivals.clear()
        arrivals.append(now)
        self.frame_ids[role] = frame_id

    def accepted(self) -> None:
        self.outcomes.append(False)

    def reject(self, reason: str, detail: str) -> None:
        self.outcomes.append(True)
        self.rejected[reason] += 1
        self.node.get_logger().warning(f"rejected input ({reason}): {detail}", throttle_duration_sec=2.0)

    def processed(self, latency_ms: float, stamp_ns: int) -> None:
        self.processed_count += 1
        self.latencies_ms.append(latency_ms)
        self.stamp_latencies_ms.append((self.now_ns() - stamp_ns) * 1e-6)

    def observe(self, stage: Any) -> None:
        """Take the stage's facts after it was fed: degraded state, info, dropped inputs, stamp jumps."""
        self.state, self.dropped = stage.state, stage.dropped()
        self.info.update(stage.info())
        if stage.stamps.jumps > self.time_jumps:
            self.time_jumps = stage.stamps.jumps
            role, back_s = stage.stamps.last_jump
            self.notes.append(f"{role} stamp jumped back {back_s:.2f} s: {role} state reset")
            self.node.get_logger().warning(self.notes[-1])

    # ------------------------------------------------------------------------------------------- status
    def rate_hz(self, role: str) -> float:
        a = self.arrivals[role]
        span = (a[-1] - a[0]) * 1e-9 if len(a) >= 2 else 0.0
        return (len(a) - 1) / span if span > 0 else 0.0

    def conditions(self, now_ns: int) -> list[tuple[int, str]]:
        """(level, text) of every condition that is not nominal."""
        c = self.cfg
        out = [(DiagnosticStatus.WARN, w) for w in self.warnings]
        if self.state:
            out.append((DiagnosticStatus.WARN, self.state))
        bad = sum(self.outcomes)
        if bad:
            out.append((DiagnosticStatus.WARN, f"{bad} of the last {len(self.outcomes)} inputs rejected"))
        for role in self.roles:
            a = self.arrivals[role]
            silent_s = (now_ns - (a[-1] if a else self.started_ns)) * 1e-9
            if silent_s > c.dead_input_warn_s:
                level = DiagnosticStatus.ERROR if silent_s > c.dead_input_error_s else DiagnosticStatus.WARN
                out.append((level, f"no {role} input for {silent_s:.1f} s"))
            elif c.expected_rate_hz > 0 and len(a) >= 2:
                rate = self.rate_hz(role)
                if abs(rate - c.expected_rate_hz) > c.rate_tolerance * c.expected_rate_hz:
                    out.append((DiagnosticStatus.WARN, f"{role} input at {rate:.1f} Hz, expected "
                                f"{c.expected_rate_hz:g} Hz"))
        return out

    def status(self) -> DiagnosticStatus:
        now = self.now_ns()
        if self.started_ns is None or now < self.started_ns:
            self.started_ns = now
        conditions = [] if self.paused else self.conditions(now)
        level = max((lv for lv, _ in conditions), default=DiagnosticStatus.OK)
        message = self.paused or "; ".join([t for lv, t in conditions if lv == level] + self.notes) or "ok"
        self.notes = []
        lat, stamp_lat = _mean_p95(self.latencies_ms), _mean_p95(self.stamp_latencies_ms)
        values = {**{f"input_rate_hz/{r}": f"{self.rate_hz(r):.2f}" for r in self.roles},
                  "expected_rate_hz": f"{self.cfg.expected_rate_hz:g}",
                  "latency_mean_ms": lat[0], "latency_p95_ms": lat[1],
                  "stamp_latency_mean_ms": stamp_lat[0], "stamp_latency_p95_ms": stamp_lat[1],
                  "processed": str(self.processed_count), "skipped_no_subscribers": str(self.skipped_no_subscribers),
                  "dropped": str(self.dropped),
                  **{f"rejected/{r}": str(self.rejected[r]) for r in self.reasons},
                  "time_jumps": str(self.time_jumps), **self.info}
        hardware_id = ",".join(dict.fromkeys(self.frame_ids[r] for r in self.roles if r in self.frame_ids))
        return DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=hardware_id,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def publish(self) -> None:
        out = DiagnosticArray()
        out.header.stamp = self.node.get_clock().now().to_msg()
        out.status.append(self.status())
        self.pub.publish(out)


def has_subscribers(publishers: Sequence[Any]) -> bool:
    return any(p.get_subscription_count() > 0 for p in publishers)


def _start_errors() -> tuple[type[Exception], ...]:
    """What stops a node at configure with its reason: a model that fails its sha256 check, a bad parameter..."""
    from glassbox.models.card import ModelCardError, ModelIntegrityError
    from glassbox.monitor import ReferenceProfileError
    return (ModelIntegrityError, ModelCardError, ReferenceProfileError, ParameterValueError, FileNotFoundError)


def provider_options_from(node: Node) -> Any:
    """Declare the GPU execution providers' options (read-only) and return them as the runtime takes them."""
    from glassbox.runtime import CudaOptions, ProviderOptions, TensorRTOptions
    device_id = declare(node, "device_id", 0, "GPU of the cuda and tensorrt execution providers", lo=0, hi=64,
                        read_only=True)
    fp16 = declare(node, "tensorrt.fp16", True, "TensorRT builds fp16 engines (about half the latency on Orin)",
                   read_only=True)
    cache = declare(node, "tensorrt.engine_cache_dir", "~/.cache/glassbox/trt", "where TensorRT engines are kept "
                    "between starts (building one takes minutes on a Jetson); empty = no engine cache",
                    read_only=True)
    workspace_mb = declare(node, "tensorrt.max_workspace_mb", 1024, "TensorRT builder workspace, MiB", lo=16,
                           hi=65536, read_only=True)
    trt = TensorRTOptions(fp16=fp16, engine_cache=bool(cache), device_id=device_id,
                          max_workspace_bytes=workspace_mb << 20, **({"cache_dir": cache} if cache else {}))
    return ProviderOptions(tensorrt=trt, cuda=CudaOptions(device_id=device_id))


class PerceptionNode(LifecycleNode):
    """Base of the perception nodes: common parameters, the stage's subscriptions and publishers, one callback.

    A subclass declares its own parameters in ``__init__`` and builds its pipeline and stage in
    :meth:`make_stage`. The node is a lifecycle node; with ``lifecycle: false`` (the default) :func:`run_node`
    configures and activates it at once, with ``lifecycle: true`` a lifecycle manager (``ros2 lifecycle set``)
    drives it:

    - configure: load the model card, verify the model's sha256, build the pipeline and stage, create the
      publishers, apply the live parameters (values set while unconfigured included);
    - activate: one warm-up inference, the latched topics, the subscriptions: outputs flow;
    - deactivate: the subscriptions are destroyed, inputs are no longer fed;
    - cleanup: the stage (and the inference session with it) and the publishers are released;
    - shutdown (from any state) and error processing: all of that released.

    Diagnostics are published in every state: while the node is not active their message is its state.
    """

    def __init__(self, capability: str, expected_rate_hz: float):
        from glassbox.capabilities import get
        record = get(capability)
        self.default_card = record.default_card
        super().__init__(record.node_name)
        self.stage: Any = None
        self.live = LiveParameters(self, ready=lambda: self.stage is not None)
        self.capability, self.expected_rate_hz = capability, expected_rate_hz
        self.lifecycle = declare(self, "lifecycle", False, "managed node: wait for lifecycle transitions "
                                 "(configure, activate, ...) instead of configuring and activating at start",
                                 read_only=True)
        self.model_card_path = declare(self, "model_card", "", "model card YAML; empty = the shipped "
                                       f"{self.default_card} in share/glassbox_bringup/models", read_only=True)
        self.backend = declare(self, "backend", "onnxruntime", "inference backend", choices=("onnxruntime", "torch"),
                               read_only=True)
        self.providers = tuple(declare(self, "providers", ["cpu"], "ONNX Runtime execution providers, tried in "
                                       "order (a loud warning on fallback)", choices=("cpu", "cuda", "tensorrt"),
                                       read_only=True))
        self.device = declare(self, "device", "cpu", "torch device for the torch backend (cpu, cuda, cuda:1)",
                              read_only=True)
        self.threads = declare(self, "threads", 0, "intra-op threads of the backend (0 = library default)",
                               lo=0, hi=256, read_only=True)
        self.provider_options = provider_options_from(self)
        declare(self, "entropy.enabled", True, "publish per-layer entropy profiles",
                on_set=lambda v: self.stage.pipeline.set_probe(enabled=v))
        declare(self, "entropy.every_n", 1, "estimate the entropy profile every N-th frame", lo=1, hi=1000,
                on_set=lambda v: self.stage.pipeline.set_probe(every_n=v))
        self.skip_without_subscribers = declare(
            self, "skip_without_subscribers", True, "skip inference while no output topic has a subscriber",
            on_set=lambda v: setattr(self, "skip_without_subscribers", v))
        declare(self, "time_jump_threshold_s", 1.0, "a header stamp older than its stream's previous one by more "
                "than this restarts the stream (a looped bag, a simulator reset): its state is reset; by less it is "
                "rejected (stamp_backwards), s", lo=0.0, hi=1e6,
                on_set=lambda v: setattr(self.stage.stamps, "jump_threshold_s", v))
        self.inputs = record.inputs
        self.diag = NodeDiagnostics(self, [s.role for s in self.inputs], expected_rate_hz)
        self.diag.paused = "unconfigured"
        self.pubs: dict[str, Any] = {}
        self.latched_pubs: dict[str, Any] = {}
        self.subs: list[Any] = []

    def param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def make_stage(self) -> Any:
        """The node's stage, built from the verified model (``self.card_file``, ``self.card``) and the current
        parameter values (:meth:`param`). Called by configure."""
        raise NotImplementedError

    def build_pipeline(self, **overrides: Any) -> Any:
        """The core pipeline from the verified model card and this node's backend / entropy parameters.

        The entropy probe is built enabled and then set to ``entropy.enabled``, so that it can be switched on and
        off while the node runs. The warm-up inference is left to activation. Execution providers that were asked
        for but are not available are reported loudly (log and diagnostics), never silently replaced.
        """
        from glassbox.stages.build import build_pipeline
        pipeline, _ = build_pipeline(self.capability, self.card_file, backend=self.backend, providers=self.providers,
                                     device=self.device, threads=self.threads, entropy_enabled=True,
                                     entropy_every_n=self.param("entropy.every_n"), warmup_runs=0,
                                     provider_options=self.provider_options, **overrides)
        pipeline.set_probe(enabled=self.param("entropy.enabled"))
        self.diag.info["providers"] = ",".join(pipeline.runtime.providers)
        self.diag.info["provider_fallback"] = "; ".join(pipeline.runtime.warnings)
        self.diag.warnings = list(pipeline.runtime.warnings)
        for w in self.diag.warnings:
            self.get_logger().error(f"execution provider fallback: {w}")
        return pipeline

    # ------------------------------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure", self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("activate", self._activate)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("deactivate", self._unsubscribe)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("clean up", self.release)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("shut down", self.release)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("recover", self.release)

    def configure_and_activate(self) -> bool:
        """What an unmanaged node does at start; False when a transition failed (its reason logged)."""
        return all(step() == TransitionCallbackReturn.SUCCESS for step in (self.trigger_configure,
                                                                           self.trigger_activate))

    def _transition(self, name: str, step: Callable[[], None]) -> TransitionCallbackReturn:
        """Run ``step``: a known start error fails the transition with its reason (the node stays unconfigured),
        any other error is logged with its traceback and sends the node to error processing."""
        try:
            step()
        except _start_errors() as exc:
            self.get_logger().fatal(f"cannot {name}: {exc}")
            self.release()
            return TransitionCallbackReturn.FAILURE
        except Exception:
            import traceback
            self.get_logger().fatal(f"cannot {name}:\n{traceback.format_exc()}")
            return TransitionCallbackReturn.ERROR
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        """Verify the model, build the stage, publish its outputs (reliable) and create its latched topics
        (reliable, transient local: kept for late subscribers), all with QoS overrides."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from glassbox_ros.converters import RclpyFactory
        self.card_file, self.card, self.model_file = resolve_model(self.model_card_path, self.default_card)
        stage = self.make_stage()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pubs = {suffix: self.create_publisher(RclpyFactory._cls(typename), suffix, reliable_qos(),
                                                   qos_overriding_options=overridable())
                     for suffix, typename in stage.outputs.items()}
        self.latched_pubs = {suffix: self.create_publisher(RclpyFactory._cls(typename), suffix, latched)
                             for suffix, typename in stage.latched.items()}
        self.stage = stage
        try:
            self.live.apply()
        except ValueError as exc:              # values set while unconfigured, checked together only now
            raise ParameterValueError(str(exc)) from None
        self.diag.info.update({"model": self.card.name, "model_file": str(self.model_file), "backend": self.backend})
        self.diag.paused = "inactive"
        self.get_logger().info(f"{self.card.name} ({self.backend}) configured")

    def _activate(self) -> None:
        """Warm up (one inference), publish the latched topics, subscribe the capability's inputs (sensor data
        QoS; camera streams as ``glassbox_ros.camera_io`` says). Each input message goes to :meth:`on_input`."""
        from glassbox_ros.camera_io import subscribe_inputs
        self.stage.pipeline.warmup()
        for suffix, msg in self.stage.latched_messages(self.get_clock().now().nanoseconds).items():
            self.latched_pubs[suffix].publish(msg)
        self.subs, input_info = subscribe_inputs(self, self.inputs, self.on_input, sensor_qos())
        self.diag.info.update(input_info)
        self.diag.resume()
        self.get_logger().info(f"{self.card.name} ({self.backend}) ready; publishing {', '.join(self.pubs)}")

    def _unsubscribe(self) -> None:
        for sub in self.subs:
            self.destroy_subscription(sub)
        self.subs = []
        self.diag.paused = "inactive"

    def release(self) -> None:
        """Back to unconfigured: no subscriptions, no publishers, no stage (nor inference session)."""
        self._unsubscribe()
        for pub in [*self.pubs.values(), *self.latched_pubs.values()]:
            self.destroy_publisher(pub)
        self.pubs, self.latched_pubs, self.stage = {}, {}, None
        self.diag.paused = "unconfigured"

    # ------------------------------------------------------------------------------------------ frames
    def on_input(self, role: str, msg: Any) -> None:
        """The callback of every input: count, skip when nobody listens, feed the stage, publish what it gives."""
        from glassbox.msg import ConversionError
        self.diag.input_received(role, msg.header.frame_id)
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
            self.diag.observe(self.stage)
        self.diag.accepted()
        if out is None:
            return
        for suffix, out_msg in out.messages.items():
            self.pubs[suffix].publish(out_msg)
        self.diag.processed((time.perf_counter() - t0) * 1e3, out.stamp_ns)


def _spin(node: Any) -> None:
    """``rclpy.spin``, except that a message rclpy cannot take (a sample it fails to convert to Python, see
    ros2/rclpy#848) is logged and counted as ``undecodable`` instead of ending the node; any other error still
    propagates."""
    import traceback

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    while rclpy.ok():
        try:
            executor.spin_once(timeout_sec=0.5)
        except RuntimeError as exc:
            if not any(f.name == "_take_subscription" for f in traceback.extract_tb(exc.__traceback__)):
                raise
            if getattr(node, "diag", None) is not None:
                node.diag.reject("undecodable", f"a message could not be taken: {exc}")
            else:
                node.get_logger().error(f"a message could not be taken: {exc}", throttle_duration_sec=5.0)


def run_node(node_cls: type, args: Any = None) -> None:
    """``main()`` of every node: start, spin, shut down cleanly (Humble, Jazzy and Kilted).

    An unmanaged perception node is configured and activated before it spins: a model that fails its sha256
    check, a reference profile that cannot be read, or a bad parameter, stops it at start with the reason
    (exit status 1). A managed one (``lifecycle: true``) spins unconfigured and waits for its transitions.
    """
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = node_cls()
        if isinstance(node, PerceptionNode) and not node.lifecycle and not node.configure_and_activate():
            sys.exit(1)
        _spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _start_errors() as exc:
        rclpy.logging.get_logger(node_cls.__name__).fatal(f"cannot start: {exc}")
        sys.exit(1)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
