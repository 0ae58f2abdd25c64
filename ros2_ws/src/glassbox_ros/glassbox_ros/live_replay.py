"""Live replay: play a bag into the node processes over DDS and record what they publish.

Started by ``glassbox replay BAG --out OUT --live`` (or ``python -m glassbox_ros.live_replay``). It starts the
perception node executables with their ``config/`` files, the model cards of the replay configuration and the
bag's sensor topics remapped onto their inputs; waits until every node is connected; publishes the bag's sensor
messages (and the cameras' camera_info beside them) at the recorded pace (times ``--rate``); records every
output topic, latched ones included (serialised as received), into an mcap bag; and reports, per node, inputs
sent, outputs received, drops and latency (output received − input sent).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

from glassbox import capabilities
from glassbox.bag.replay import ReplayConfig, ReplayError, card_setting, discover_topics
from glassbox.bag.typestore import make_typestore
from glassbox.capabilities import Capability
from glassbox.config import from_dict
from glassbox.stages.build import card_path_for, default_models_dir
from glassbox_ros.converters import RclpyFactory
from glassbox_ros.processes import NodeProcess

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class LiveReplayError(RuntimeError):
    """Live replay cannot run (nodes did not start or connect)."""


def config_dir() -> Path:
    repo = Path(__file__).resolve().parents[4] / "config"
    if repo.is_dir():
        return repo
    from glassbox_ros.node_common import shipped_models_dir
    return shipped_models_dir().parent / "config"


class Recorder(Node):
    """Publishes the bag's sensor topics and records the nodes' outputs with their receive times."""

    def __init__(self, inputs: dict[str, str], outputs: dict[str, str], latched: frozenset[str] = frozenset()):
        super().__init__("glassbox_live_replay")
        factory = RclpyFactory()
        self.classes = {t: factory._cls(typ) for t, typ in {**inputs, **outputs}.items()}
        self.pubs = {t: self.create_publisher(self.classes[t], t, RELIABLE) for t in inputs}
        self.received: list[tuple[str, int, bytes]] = []
        self.subs = [self.create_subscription(self.classes[t], t, self._make_cb(t),
                                              LATCHED if t in latched else RELIABLE) for t in outputs]

    def _make_cb(self, topic: str):
        def cb(msg) -> None:
            self.received.append((topic, time.time_ns(), serialize_message(msg)))
        return cb

    def connected(self, node_inputs: list[str]) -> bool:
        return (all(self.pubs[t].get_subscription_count() > 0 for t in node_inputs)
                and all(s.get_publisher_count() > 0 for s in self.subs))


def _spin_until(node: Node, cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return cond()


@dataclass
class _NodePlan:
    """One node to start: its capability, the bag topics it is fed, and the output topics to record."""

    capability: Capability
    remaps: dict[str, str]
    inputs: dict[str, str]           # bag topic -> message type, played into this node (images first)
    outputs: dict[str, str]          # full output topic -> message type, latched ones last
    latched: frozenset[str]          # the outputs published once with transient-local durability

    @property
    def first_output(self) -> str:
        return next(iter(self.outputs))


def _plan(cfg: ReplayConfig, roles: dict[str, str], types: dict[str, str], ns: str) -> list[_NodePlan]:
    """A node for every configured capability with at least one of its input roles in the bag."""
    plans = []
    for name in cfg.capabilities:
        cap = capabilities.get(name)
        remaps = {s.topic: roles[s.role] for s in cap.inputs if s.role in roles}
        if not remaps:
            continue
        if name == "segmentation" and cfg.refine_before_segmentation and "refiner" in cfg.capabilities:
            remaps = {s.topic: f"{ns}/{capabilities.get('refiner').namespace}/image_refined" for s in cap.inputs
                      if s.role == "rgb"}
        inputs = {t: types[t] for t in remaps.values() if not t.startswith(ns)}
        inputs.update({roles[f"{s.role}_info"]: types[roles[f"{s.role}_info"]] for s in cap.inputs
                       if s.is_camera and f"{s.role}_info" in roles and remaps.get(s.topic) == roles.get(s.role)})
        outputs = {f"{ns}/{cap.namespace}/{suffix}": typ for suffix, typ in {**cap.outputs, **cap.latched}.items()}
        latched = frozenset(f"{ns}/{cap.namespace}/{suffix}" for suffix in cap.latched)
        plans.append(_NodePlan(cap, remaps, inputs, outputs, latched))
    return plans


def _start(plan: _NodePlan, cfg: ReplayConfig, ns: str, log_dir: Path) -> NodeProcess:
    cap = plan.capability
    card = card_path_for(cap.name, card_setting(cfg, cap.name), cfg.models_dir or default_models_dir())
    return NodeProcess(cap.node, params_file=config_dir() / cap.params_file, namespace=f"{ns}/{cap.namespace}",
                       params={"model_card": str(card), "backend": cfg.backend, "providers": list(cfg.providers),
                               "skip_without_subscribers": False},
                       remaps=plan.remaps, log_dir=log_dir)


def _stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _connect(rec: Recorder, procs: list[NodeProcess], timeout_s: float) -> None:
    if not _spin_until(rec, lambda: rec.connected(list(rec.pubs)) or any(not p.alive() for p in procs),
                       timeout_s) or any(not p.alive() for p in procs):
        dead = [f"{p.cmd[0]}:\n{p.log()[-2000:]}" for p in procs if not p.alive()]
        raise LiveReplayError(f"nodes did not connect within {timeout_s:.0f} s"
                              + ("; exited: " + "\n".join(dead) if dead else ""))
    rclpy.spin_once(rec, timeout_sec=0.5)


def _play(rec: Recorder, reader: Any, rate: float) -> dict[str, dict[int, int]]:
    """Publish the bag's input topics at the recorded pace; input topic -> stamp -> wall time sent (ns)."""
    sent: dict[str, dict[int, int]] = defaultdict(dict)
    t_bag0 = t_wall0 = None
    for conn, t_log, raw in reader.messages(connections=[c for c in reader.connections if c.topic in rec.pubs]):
        if t_bag0 is None:
            t_bag0, t_wall0 = t_log, time.monotonic()
        due = t_wall0 + (t_log - t_bag0) * 1e-9 / rate
        while time.monotonic() < due:
            rclpy.spin_once(rec, timeout_sec=max(0.0, min(0.01, due - time.monotonic())))
        msg = deserialize_message(bytes(raw), rec.classes[conn.topic])
        sent[conn.topic][_stamp_ns(msg)] = time.time_ns()
        rec.pubs[conn.topic].publish(msg)
    return sent


def _node_summary(plan: _NodePlan, rec: Recorder, sent: dict[str, dict[int, int]]) -> dict[str, Any]:
    """Inputs sent, outputs received, drops and latency (output received - input sent) of one node."""
    topic = plan.first_output
    in_topic = next(iter(plan.inputs), None)
    expected = len(sent.get(in_topic, {})) if in_topic else 0
    got = [(t, deserialize_message(raw, rec.classes[topic])) for tp, t, raw in rec.received if tp == topic]
    sent_at = sent.get(in_topic, {})
    lat = [(t - sent_at[_stamp_ns(m)]) * 1e-6 for t, m in got if _stamp_ns(m) in sent_at]
    return {"inputs_sent": expected, "outputs_received": len(got), "dropped": max(0, expected - len(got)),
            "latency_mean_ms": float(np.mean(lat)) if lat else None,
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat else None}


def _write_outputs(out: Path, rec: Recorder, outputs: dict[str, str], typestore: Any) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for topic, t_ns, raw in rec.received:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, outputs[topic], typestore=typestore)
            w.write(conns[topic], t_ns, raw)


def live_replay(bag: Path, out: Path, cfg: ReplayConfig, topic_map: dict[str, str], rate: float = 1.0,
                grace_s: float = 10.0, connect_timeout_s: float = 120.0, log_dir: Path | None = None) -> dict:
    """Play ``bag`` into the node processes and record their outputs into ``out``; returns the summary."""
    from rosbags.highlevel import AnyReader

    typestore = make_typestore()
    reader = AnyReader([bag], default_typestore=typestore)
    reader.open()
    roles, notes = discover_topics(reader, topic_map)
    ns = cfg.output_namespace.rstrip("/")
    plans = _plan(cfg, roles, {c.topic: c.msgtype for c in reader.connections}, ns)
    if not plans:
        reader.close()
        raise LiveReplayError(f"no capability has its input topics in the bag (found: {roles})")
    inputs = {t: typ for p in plans for t, typ in p.inputs.items()}
    outputs = {t: typ for p in plans for t, typ in p.outputs.items()}
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="glassbox_live_"))
    procs = [_start(p, cfg, ns, log_dir) for p in plans]
    rclpy.init()
    rec = Recorder(inputs, outputs, frozenset().union(*(p.latched for p in plans)))
    try:
        _connect(rec, procs, connect_timeout_s)
        sent = _play(rec, reader, rate)

        def all_in() -> bool:
            counts = defaultdict(int)
            for topic, _, _ in rec.received:
                counts[topic] += 1
            return all(counts[p.first_output] >= len(sent.get(next(iter(p.inputs), ""), {})) for p in plans)
        _spin_until(rec, all_in, grace_s)
    finally:
        for p in procs:
            p.stop()
        rec.destroy_node()
        rclpy.try_shutdown()
        reader.close()
    _write_outputs(out, rec, outputs, typestore)
    return {"bag": str(bag), "out": str(out), "notes": notes,
            "nodes": {p.capability.name: _node_summary(p, rec, sent) for p in plans},
            "messages_recorded": len(rec.received)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bag", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config-json", default="{}", help="ReplayConfig as JSON")
    p.add_argument("--map-json", default="{}", help="role -> topic as JSON")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--summary", type=Path, default=None, help="write the summary JSON here")
    args = p.parse_args(argv)
    cfg = from_dict(ReplayConfig, json.loads(args.config_json), "--config-json")
    try:
        summary = live_replay(args.bag, args.out, cfg, json.loads(args.map_json), rate=args.rate)
    except (LiveReplayError, ReplayError) as exc:
        print(f"live replay: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(summary, indent=2)
    if args.summary:
        args.summary.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
