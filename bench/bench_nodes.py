"""End-to-end latency of the perception nodes through DDS, next to the bare pipeline time of the same input.

Per node (lidar_detector, image_refiner, segmentation, fusion) the node runs as its own process (the
installed executable, ONNX Runtime backend, its shipped parameter file) and this process publishes synthetic
sensor frames with the synthetic drive's stamps and rates (LiDAR 10 Hz, RGB 15 Hz, thermal 10 Hz). Where the
node cannot keep up with that, the drive is played slower (the stamps keep their spacing, so the fusion node
forms the same pairs): at most 1 / 1.5 of the rate the in-process stage time allows, and once more at 0.8 x the
achieved rate if outputs still fall behind. Latency = publish of the input -> first output message with
the input's header stamp received here (``first``) and -> every output topic of that stamp received
(``all``). The same input is then run in this process through the bare pipeline (decoded arrays in, result
out) and through the message-level stage (message in, output messages out), with the node's settings.

Overhead = (node latency - bare pipeline time) / bare pipeline time (goal <= 20 %). It holds decoding,
encoding of every output message, DDS transport both ways and the executors of both processes; on a 2-core
machine the client and the node compete for the same cores, which this number includes. The node's own
/diagnostics (processing time of its callback) splits it into time inside the node and transport.

Inputs: one ``glassbox.sim`` street scene seen by an HDL-64-like LiDAR and 640 x 512 RGB / thermal cameras.
Models: the shipped cards in ``models/`` where they exist, else untrained networks of the same architecture
(``tests/support/support_models.py``), which run exactly as long.

Run: ``source ros2_ws/install/local_setup.bash && .venv/bin/python bench/bench_nodes.py`` (writes
``bench/results/nodes.json``); ``--frames N`` sets the measured frames per node (default 24).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# DDS on loopback with the project's large-data profile, on a domain of our own: set before rclpy is imported.
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)   # see tests/conftest.py: it overrides the profile
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() ^ time.time_ns()).randint(1, 100)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(ROOT / "config/dds/fastdds_local_large_data.xml"))
sys.path.insert(0, str(ROOT / "tests" / "ros"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from _common import print_table, write_results, model_cards  # noqa: E402
from glassbox import msg as gm  # noqa: E402
from glassbox.capabilities import CAMERA_INFO, all_capabilities  # noqa: E402
from glassbox.msg import stamp_to_ns  # noqa: E402
from glassbox.sim import (SceneConfig, lidar_preset, make_scene, render_cameras, render_thermal,  # noqa: E402
                          rgb_camera, scan_lidar, thermal_camera)
from glassbox.stages.build import build_pipeline, build_stage  # noqa: E402
from glassbox.sync import ApproximateTimeSync, SyncConfig  # noqa: E402
from glassbox_ros import converters as cv  # noqa: E402
from glassbox_ros.converters import RCLPY, RclpyFactory  # noqa: E402
from harness import RELIABLE, NodeProcess, RosClient  # noqa: E402

NOMINAL_HZ = {"lidar": 10.0, "rgb": 15.0, "thermal": 10.0}
HEADROOM = 1.5          # an output period of at least 1.5 x the in-process stage time, else the drive is slowed
SLOP_S = 0.05           # fusion.yaml sync.slop_s

CAPS = {c.name: c for c in all_capabilities()}
OUTPUT_HZ = {name: c.bench["rate_hz"] for name, c in CAPS.items()}     # inferences per second


def node_of(cap: str) -> tuple[str, str, str, tuple[str, ...], dict[str, type]]:
    """(executable, parameter file, namespace, input roles, outputs by suffix) from the capability record. The
    benchmark sends no camera_info, so the camera_info a node publishes only beside an input's is not awaited."""
    c = CAPS[cap]
    return (c.node, c.params_file, f"/glassbox/{c.namespace}", c.roles,
            {suffix: RclpyFactory._cls(typ) for suffix, typ in c.outputs.items() if typ != CAMERA_INFO})


def input_topic(cap: str, role: str) -> str:
    return next(s.topic for s in CAPS[cap].inputs if s.role == role)


# ------------------------------------------------------------------------------------------------ inputs
def make_inputs(seed: int = 7) -> dict:
    """One street scene: an HDL-64 sweep (with ring and time fields) and a 640 x 512 RGB + thermal pair."""
    scene = make_scene(seed, SceneConfig())
    scan = scan_lidar(scene, lidar_preset("hdl64"), np.eye(4), seed=seed)
    cam = render_cameras(scene, rgb_camera(width=640, height=512), None, np.eye(4), "day", seed)
    th = render_thermal(scene, thermal_camera(width=640, height=512), np.eye(4), "day", seed)
    cloud = gm.xyz_to_structured(scan.points, extra={"ring": scan.ring.astype(np.uint16),
                                                     "time": scan.time.astype(np.float32)})
    return {"cloud": cloud, "points": scan.points.astype(np.float32), "ring": scan.ring.astype(np.int64),
            "rgb": np.ascontiguousarray(cam.rgb), "thermal": np.ascontiguousarray(th.thermal16)}


def make_msg(stream: str, inputs: dict, stamp_ns: int):
    header = Header(frame_id="camera_thermal" if stream == "thermal" else ("lidar" if stream == "lidar" else "camera"))
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    if stream == "lidar":
        return cv.build.pointcloud2(inputs["cloud"], header)
    if stream == "rgb":
        return cv.build.image(inputs["rgb"], "rgb8", header)
    return cv.build.image(inputs["thermal"], "mono16", header)


# ----------------------------------------------------------------------------------------- in-process times
class InProcess:
    """The node's pipeline and stage built in this process with the node's settings, timed on the same input."""

    def __init__(self, cap: str, card: Path, inputs: dict):
        from dataclasses import replace
        pipeline, _ = build_pipeline(cap, card)   # the nodes' defaults: onnxruntime, cpu, library threads
        if cap == "lidar":                        # lidar_detector.yaml's decode settings
            pipeline.cfg = replace(pipeline.cfg, decode=replace(pipeline.cfg.decode, score_threshold=0.3,
                                                                nms_iou=0.1))
        stage = build_stage(cap, pipeline, RCLPY)
        if cap == "lidar":
            msg = make_msg("lidar", inputs, 1)
            self.fns = {"pipeline": lambda: pipeline(inputs["points"], inputs["ring"]),
                        "stage": lambda: stage.feed("lidar", msg, 0)}
        elif cap == "fusion":
            rgb_msg, th_msg = make_msg("rgb", inputs, 1), make_msg("thermal", inputs, 1)

            def fused():                          # a fresh stamp per pair: the synchroniser uses each once
                th_msg.header.stamp.sec = rgb_msg.header.stamp.sec = rgb_msg.header.stamp.sec + 1
                stage.feed("thermal", th_msg, 0)
                return stage.feed("rgb", rgb_msg, 0)
            self.fns = {"pipeline": lambda: pipeline(inputs["rgb"], inputs["thermal"]), "stage": fused}
        else:
            msg = make_msg("rgb", inputs, 1)
            self.fns = {"pipeline": lambda: pipeline(inputs["rgb"]), "stage": lambda: stage.feed("rgb", msg, 0)}
        self.samples: dict[str, list[float]] = {k: [] for k in self.fns}
        self.parts: dict[str, list[float]] = {}
        for fn in self.fns.values():              # warm-up
            fn()

    def sample(self, repeat: int) -> None:
        """``repeat`` calls of each, interleaved (pipeline, stage, pipeline, ...) so load drifts hit both alike."""
        for _ in range(repeat):
            for name, fn in self.fns.items():
                t0 = time.perf_counter()
                out = fn()
                self.samples[name].append((time.perf_counter() - t0) * 1e3)
                result = out.result if name == "stage" else out
                for part, ms in getattr(result, "timings_ms", {}).items():
                    self.parts.setdefault(part, []).append(float(ms))

    def summary(self) -> dict[str, float]:
        out = {}
        for name, ms in self.samples.items():
            out[f"{name}_median_ms"] = float(np.median(ms))
            out[f"{name}_p95_ms"] = float(np.percentile(ms, 95))
        out["pipeline_parts_median_ms"] = {k: round(float(np.median(v)), 3) for k, v in self.parts.items()}
        return out


# ---------------------------------------------------------------------------------------------- node runs
def schedule(cap: str, frames: int, lead: int) -> list[tuple[int, str]]:
    """(stamp offset ns, stream) of every frame to send at the drive's rates, in time order, enough for
    ``lead`` + ``frames`` outputs (thermal before RGB at equal stamps)."""
    streams = node_of(cap)[3]
    span_s = (frames + lead + 1) / OUTPUT_HZ[cap]
    events = [(int(round(k * 1e9 / NOMINAL_HZ[s])), s) for s in streams
              for k in range(int(span_s * NOMINAL_HZ[s]) + 1)]
    return sorted(events, key=lambda e: (e[0], e[1] != "thermal"))


def expected_pairs(events: list[tuple[int, str]]) -> dict[int, int]:
    """RGB stamp -> thermal stamp of every pair the fusion node's synchroniser forms from ``events``."""
    sync = ApproximateTimeSync(SyncConfig(slop_s=SLOP_S, queue_size=10))
    pairs = {}
    for stamp, stream in events:
        pair = sync.add(0 if stream == "rgb" else 1, stamp, stamp)
        if pair is not None:
            pairs[pair.stamp_first_ns] = pair.stamp_second_ns
    return pairs


def run_node(cap: str, card: Path, inputs: dict, speed: float, frames: int, lead: int, log_dir: Path) -> dict:
    """Start the node, send the schedule at ``speed`` x real time, and time every answered frame."""
    executable, params, ns, streams, outputs = node_of(cap)
    client = RosClient(f"bench_{cap}_client")
    arrivals: dict[str, dict[int, float]] = {s: {} for s in outputs}

    def on_output(suffix: str):
        def cb(msg) -> None:
            t = time.perf_counter()
            header = msg.header if hasattr(msg, "header") else (msg.markers[0].header if msg.markers else None)
            if header is not None:
                arrivals[suffix].setdefault(stamp_to_ns(header.stamp), t)
        return cb

    subs = [client.node.create_subscription(typ, f"{ns}/{suffix}", on_output(suffix), RELIABLE)
            for suffix, typ in outputs.items()]
    diag: dict[str, str] = {}

    def on_diag(msg: DiagnosticArray) -> None:   # the node's own processing time (callback body), in ms
        for status in msg.status:
            if status.name.startswith(ns + "/"):
                diag.update({kv.key: kv.value for kv in status.values})
    diag_sub = client.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    params = {"model_card": str(card), "diagnostics.window": 10000}   # latency statistics over every frame
    if cap == "fusion":    # a slowed-down drive must not read as a silent sensor
        params["sensor_timeout_s"] = max(0.5, 3.0 / (NOMINAL_HZ["thermal"] * speed))
    node = NodeProcess(executable, params_file=ROOT / "config" / node_of(cap)[1], namespace=ns, log_dir=log_dir,
                       params=params)
    base_ns = 10_000_000_000
    events = schedule(cap, frames, lead)
    sent: dict[str, dict[int, float]] = {s: {} for s in streams}
    try:
        pubs = {s: client.publisher(PointCloud2 if s == "lidar" else Image, f"{ns}/{input_topic(cap, s)}")
                for s in streams}
        for pub in pubs.values():
            client.wait_for_subscribers(pub, timeout=180)
        client.spin_until(lambda: all(s.get_publisher_count() > 0 for s in subs), 180, f"publishers of {cap}")
        # Warm-up: frames until one is answered (the first inference allocates), before the clock starts.
        first = next(iter(outputs))
        for k in range(60):
            for stream in sorted(streams, key=lambda s: s != "thermal"):
                pubs[stream].publish(make_msg(stream, inputs, 1_000_000_000 + k * 10_000_000))
            try:
                client.spin_until(lambda: bool(arrivals[first]), 3.0, f"warm-up output of {cap}")
                break
            except TimeoutError:
                if not node.alive():
                    raise RuntimeError(f"{executable} died:\n{node.log()[-3000:]}") from None
        else:
            raise RuntimeError(f"{executable} answered no warm-up frame in 180 s:\n{node.log()[-3000:]}")
        client.spin_for(1.0)

        msgs = [(offset, stream, make_msg(stream, inputs, base_ns + offset)) for offset, stream in events]
        t_start = time.perf_counter()
        for offset, stream, msg in msgs:
            due = offset * 1e-9 / speed
            while (now := time.perf_counter() - t_start) < due:
                client.executor.spin_once(timeout_sec=due - now)   # wakes on an output or when due
            sent[stream][base_ns + offset] = time.perf_counter()
            pubs[stream].publish(msg)
        t_sent = time.perf_counter() - t_start
        want = set(sent["rgb" if cap == "fusion" else streams[0]])
        done = lambda: all(s in arrivals[o] for s in want for o in outputs)  # noqa: E731
        try:
            client.spin_until(done, 10.0, "the last outputs")
        except TimeoutError:
            pass                                   # frames the node dropped never come
        client.spin_for(1.5)                       # one more /diagnostics period
    finally:
        rc = node.stop()
        for sub in subs + [diag_sub]:
            client.node.destroy_subscription(sub)
        client.close()
    if rc != 0:
        raise RuntimeError(f"{executable} exited with {rc}:\n{node.log()[-3000:]}")

    # Expected outputs: one per input frame; for fusion one per pair the synchroniser forms, timed from the
    # publish of the later of the two frames (the one that completed the pair).
    if cap == "fusion":
        pairs = expected_pairs([(base_ns + o, s) for o, s in events])
        ref = {r: max(sent["rgb"][r], sent["thermal"][t]) for r, t in pairs.items()}
    else:
        ref = dict(sent[streams[0]])
    first_ms, all_ms, answered_t = [], [], []
    for i, (stamp, t_pub) in enumerate(sorted(ref.items())):
        got = [arrivals[o].get(stamp) for o in outputs]
        present = [t for t in got if t is not None]
        if not present:
            continue
        answered_t.append(min(present))
        if i < lead:
            continue
        first_ms.append((min(present) - t_pub) * 1e3)
        if len(present) == len(got):
            all_ms.append((max(present) - t_pub) * 1e3)
    unexpected = len(set(arrivals[first]) - set(ref) - {1_000_000_000 + k * 10_000_000 for k in range(60)})
    answered = len(answered_t)
    span = max(answered_t) - min(answered_t) if answered > 1 else 0.0
    first_a, all_a = np.asarray(first_ms), np.asarray(all_ms)

    def stat(a: np.ndarray, q: float) -> float:
        return float(np.percentile(a, q)) if a.size else float("nan")
    return {"speed": speed, "sent_hz": ",".join(f"{s}={NOMINAL_HZ[s] * speed:.2f}" for s in streams),
            "sent": {s: len(v) for s, v in sent.items()}, "send_duration_s": t_sent,
            "expected_outputs": len(ref), "answered": answered, "dropped": len(ref) - answered,
            "unexpected_outputs": unexpected,
            "expected_output_hz": OUTPUT_HZ[cap] * speed,
            "achieved_output_hz": (answered - 1) / span if span > 0 else 0.0, "measured_frames": int(first_a.size),
            "node_first_median_ms": stat(first_a, 50), "node_first_p95_ms": stat(first_a, 95),
            "node_all_median_ms": stat(all_a, 50), "node_all_p95_ms": stat(all_a, 95),
            "node_callback_mean_ms": float(diag.get("latency_mean_ms", "nan")),
            "node_callback_p95_ms": float(diag.get("latency_p95_ms", "nan")),
            "node_processed": int(diag.get("processed", "0"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=24, help="measured frames per node (after the lead-in)")
    ap.add_argument("--lead", type=int, default=3, help="frames sent first and not measured")
    ap.add_argument("--repeat", type=int, default=8, help="in-process calls before and again after each node run")
    ap.add_argument("--only", nargs="*", default=list(CAPS), choices=list(CAPS))
    args = ap.parse_args()
    t_bench = time.perf_counter()
    inputs = make_inputs()
    rows = []
    with tempfile.TemporaryDirectory(prefix="glassbox_bench_nodes_") as tmp:
        cards = model_cards(Path(tmp))
        for cap in args.only:
            card, source = cards[cap]
            bare = InProcess(cap, card, inputs)
            bare.sample(args.repeat)
            stage_ms = float(np.median(bare.samples["stage"]))
            # The drive's rates, or slower (stamps keep the drive's spacing) when the stage would not keep up.
            speed = min(1.0, 1e3 / (HEADROOM * stage_ms * OUTPUT_HZ[cap]))
            node = run_node(cap, card, inputs, speed, args.frames, args.lead, Path(tmp))
            if node["dropped"] or node["achieved_output_hz"] < 0.9 * node["expected_output_hz"]:
                # The node fell behind (outputs slower than inputs: latency grows with the queue): once more,
                # slower, at 0.8 x the rate it achieved.
                slower = speed * 0.8 * min(1.0, node["achieved_output_hz"] / node["expected_output_hz"])
                print(f"{node_of(cap)[0]}: fell behind at {speed:.2f} x real time "
                      f"({node['achieved_output_hz']:.2f} of {node['expected_output_hz']:.2f} Hz, "
                      f"{node['dropped']} dropped); again at {slower:.2f} x", flush=True)
                speed = slower
                first_try = {k: node[k] for k in ("speed", "sent_hz", "achieved_output_hz", "dropped",
                                                  "node_first_median_ms", "node_first_p95_ms")}
                node = run_node(cap, card, inputs, slower, args.frames, args.lead, Path(tmp))
                node["behind_at_first_try"] = first_try
            bare.sample(args.repeat)
            times = bare.summary()
            pipe = times["pipeline_median_ms"]
            row = {"node": node_of(cap)[0], "model": source,
                   "input": f"HDL-64 sweep, {len(inputs['points'])} pts" if cap == "lidar" else
                   ("640x512 rgb8 + 640x512 mono16" if cap == "fusion" else "640x512 rgb8"),
                   "nominal_hz": ",".join(f"{s}={NOMINAL_HZ[s]:g}" for s in node_of(cap)[3]), **node, **times,
                   "overhead_first": (node["node_first_median_ms"] - pipe) / pipe,
                   "overhead_all": (node["node_all_median_ms"] - pipe) / pipe,
                   "overhead_first_vs_stage": (node["node_first_median_ms"] - times["stage_median_ms"])
                   / times["stage_median_ms"]}
            rows.append(row)
            print(f"{row['node']}: sent at {speed:.2f} x real time, {node['answered']}/{node['expected_outputs']} "
                  f"answered, first output {node['node_first_median_ms']:.1f} ms (pipeline {pipe:.1f} ms)",
                  flush=True)
    print()
    print_table(rows, ["node", "sent_hz", "achieved_output_hz", "dropped", "measured_frames", "pipeline_median_ms",
                       "stage_median_ms", "node_first_median_ms", "node_first_p95_ms", "node_all_median_ms",
                       "node_all_p95_ms", "node_callback_mean_ms", "overhead_first", "overhead_all"])
    write_results("nodes", rows,
                  units={"*_ms": "milliseconds", "*_hz": "Hz", "speed": "fraction of real time",
                         "overhead_*": "fraction of the bare pipeline median"},
                  goals={"overhead_first": "<= 0.20"},
                  notes=["node_first = publish of the input -> first output message with its stamp received here; "
                         "node_all = -> every output topic of that stamp received; pipeline = the core pipeline on "
                         "decoded arrays in this process; stage = message in -> output messages, in this process "
                         "(median of calls before and after the node run, interleaved)",
                         "node_callback = the node's own processing time of a frame (decode, pipeline, encode, "
                         "publish) from its /diagnostics, mean over every frame including the warm-up ones",
                         "fusion: latency from the later publish of the paired RGB / thermal frames; expected "
                         "outputs = pairs the node's synchroniser forms (RGB 15 Hz, thermal 10 Hz: 2 of 3 RGB frames)",
                         "the node process and this client share the machine's CPU cores (loaded by other work)"],
                  load_average=os.getloadavg(), ros_domain_id=os.environ["ROS_DOMAIN_ID"],
                  total_wall_s=time.perf_counter() - t_bench)


if __name__ == "__main__":
    rclpy.init()
    try:
        main()
    finally:
        rclpy.try_shutdown()
