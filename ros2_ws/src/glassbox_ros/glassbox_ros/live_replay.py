"""Live replay: play a bag into the node processes over DDS and record what they publish.

Started by ``glassbox replay BAG --out OUT --live`` (or ``python -m glassbox_ros.live_replay``). It starts the
perception node executables with their ``config/`` files, the model cards of the replay configuration and the
bag's sensor topics remapped onto their inputs; waits until every node is connected; publishes the bag's sensor
messages at the recorded pace (times ``--rate``); records every output topic (serialised as received) into an
mcap bag; and reports, per node, inputs sent, outputs received, drops and latency (output received − input sent).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

from glassbox.bag.replay import ReplayConfig, ReplayError, discover_topics
from glassbox.bag.typestore import make_typestore
from glassbox.config import from_dict
from glassbox.stages.build import card_path_for, default_models_dir
from glassbox_ros.converters import RclpyFactory
from glassbox_ros.processes import NodeProcess

# capability -> executable, sub-namespace, parameter file, {node input: bag role}, outputs (suffix -> type)
NODE_TABLE = {
    "lidar": ("lidar_detector_node", "lidar", "lidar_detector.yaml", {"points": "lidar"},
              {"detections": "vision_msgs/msg/Detection3DArray", "markers": "visualization_msgs/msg/MarkerArray",
               "uncertainty": "glassbox_msgs/msg/DetectionUncertaintyArray",
               "entropy": "glassbox_msgs/msg/EntropyProfile"}),
    "refiner": ("image_refiner_node", "refiner", "image_refiner.yaml", {"image": "rgb"},
                {"image_refined": "sensor_msgs/msg/Image", "entropy": "glassbox_msgs/msg/EntropyProfile"}),
    "segmentation": ("segmentation_node", "segmentation", "segmentation.yaml", {"image": "rgb"},
                     {"labels": "sensor_msgs/msg/Image", "overlay": "sensor_msgs/msg/Image",
                      "uncertainty": "sensor_msgs/msg/Image", "entropy": "glassbox_msgs/msg/EntropyProfile"}),
    "fusion": ("rgbt_fusion_node", "fusion", "rgbt_fusion.yaml", {"rgb": "rgb", "thermal": "thermal"},
               {"detections": "vision_msgs/msg/Detection2DArray", "fusion_weights": "glassbox_msgs/msg/FusionWeights",
                "overlay": "sensor_msgs/msg/Image", "uncertainty": "glassbox_msgs/msg/DetectionUncertaintyArray",
                "entropy": "glassbox_msgs/msg/EntropyProfile"}),
}
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


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

    def __init__(self, inputs: dict[str, str], outputs: dict[str, str]):
        super().__init__("glassbox_live_replay")
        factory = RclpyFactory()
        self.classes = {t: factory._cls(typ) for t, typ in {**inputs, **outputs}.items()}
        self.pubs = {t: self.create_publisher(self.classes[t], t, RELIABLE) for t in inputs}
        self.received: list[tuple[str, int, bytes]] = []
        self.subs = [self.create_subscription(self.classes[t], t, self._make_cb(t), RELIABLE) for t in outputs]

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


def live_replay(bag: Path, out: Path, cfg: ReplayConfig, topic_map: dict[str, str], rate: float = 1.0,
                grace_s: float = 10.0, connect_timeout_s: float = 120.0, log_dir: Path | None = None) -> dict:
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    typestore = make_typestore()
    reader = AnyReader([bag], default_typestore=typestore)
    reader.open()
    roles, notes = discover_topics(reader, topic_map)
    caps = [c for c in cfg.capabilities if all(r in roles for r in NODE_TABLE[c][3].values())
            or (c == "fusion" and "rgb" in roles)]
    if not caps:
        raise LiveReplayError(f"no capability has its input topics in the bag (found: {roles})")
    ns = cfg.output_namespace.rstrip("/")
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="glassbox_live_"))
    procs, inputs, outputs, sent_topics = [], {}, {}, {}
    for cap in caps:
        exe, sub, params_file, node_inputs, outs = NODE_TABLE[cap]
        remaps = {inp: roles[role] for inp, role in node_inputs.items() if role in roles}
        if cap == "segmentation" and cfg.refine_before_segmentation and "refiner" in caps:
            remaps = {"image": f"{ns}/refiner/image_refined"}
        card = card_path_for(cap, getattr(cfg, f"{cap}_card"), cfg.models_dir or default_models_dir())
        procs.append(NodeProcess(exe, params_file=config_dir() / params_file, namespace=f"{ns}/{sub}",
                                 params={"model_card": str(card), "backend": cfg.backend,
                                         "providers": list(cfg.providers), "skip_without_subscribers": False},
                                 remaps=remaps, log_dir=log_dir))
        for topic in remaps.values():
            if not topic.startswith(ns):
                inputs[topic] = reader.connections[[c.topic for c in reader.connections].index(topic)].msgtype
                sent_topics.setdefault(cap, []).append(topic)
        for suffix, typ in outs.items():
            outputs[f"{ns}/{sub}/{suffix}"] = typ
    rclpy.init()
    rec = Recorder(inputs, outputs)
    summary: dict = {"bag": str(bag), "out": str(out), "nodes": {}, "notes": notes}
    try:
        if not _spin_until(rec, lambda: rec.connected(list(inputs)) or any(not p.alive() for p in procs),
                           connect_timeout_s) or any(not p.alive() for p in procs):
            dead = [f"{p.cmd[0]}:\n{p.log()[-2000:]}" for p in procs if not p.alive()]
            raise LiveReplayError("nodes did not connect within "
                                  f"{connect_timeout_s:.0f} s" + ("; exited: " + "\n".join(dead) if dead else ""))
        rclpy.spin_once(rec, timeout_sec=0.5)
        sent: dict[str, dict[int, int]] = defaultdict(dict)      # input topic -> stamp -> send time
        conns = [c for c in reader.connections if c.topic in inputs]
        t_bag0 = t_wall0 = None
        for conn, t_log, raw in reader.messages(connections=conns):
            if t_bag0 is None:
                t_bag0, t_wall0 = t_log, time.monotonic()
            due = t_wall0 + (t_log - t_bag0) * 1e-9 / rate
            while time.monotonic() < due:
                rclpy.spin_once(rec, timeout_sec=max(0.0, min(0.01, due - time.monotonic())))
            msg = deserialize_message(bytes(raw), rec.classes[conn.topic])
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            sent[conn.topic][stamp] = time.time_ns()
            rec.pubs[conn.topic].publish(msg)
        expected = {cap: len(sent[topics[0]]) for cap, topics in sent_topics.items()}
        first_out = {cap: f"{ns}/{NODE_TABLE[cap][1]}/{next(iter(NODE_TABLE[cap][4]))}" for cap in caps}

        def all_in() -> bool:
            counts = defaultdict(int)
            for topic, _, _ in rec.received:
                counts[topic] += 1
            return all(counts[first_out[c]] >= expected.get(c, 0) for c in caps)
        _spin_until(rec, all_in, grace_s)
    finally:
        for p in procs:
            p.stop()
        rec.destroy_node()
        rclpy.try_shutdown()
        reader.close()
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns_out = {}
        for topic, t_ns, raw in rec.received:
            if topic not in conns_out:
                conns_out[topic] = w.add_connection(topic, outputs[topic], typestore=typestore)
            w.write(conns_out[topic], t_ns, raw)
    for cap in caps:
        topic = first_out[cap]
        got = [(t, deserialize_message(raw, rec.classes[topic])) for tp, t, raw in rec.received if tp == topic]
        in_topic = sent_topics.get(cap, [None])[0]
        lat = [(t - sent[in_topic][m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec]) * 1e-6
               for t, m in got if in_topic and (m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec)
               in sent[in_topic]]
        summary["nodes"][cap] = {"inputs_sent": expected.get(cap, 0), "outputs_received": len(got),
                                 "dropped": max(0, expected.get(cap, 0) - len(got)),
                                 "latency_mean_ms": float(np.mean(lat)) if lat else None,
                                 "latency_p95_ms": float(np.percentile(lat, 95)) if lat else None}
    summary["messages_recorded"] = len(rec.received)
    return summary


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
