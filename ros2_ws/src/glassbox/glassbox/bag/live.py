"""``glassbox replay --live``: the bag played into the real node processes over DDS (needs ROS 2).

The core never imports rclpy, so the live player (``glassbox_ros.live_replay``) runs as its own process in the
sourced ROS 2 environment; this module starts it and reads back its summary.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from glassbox.bag.replay import ReplayConfig
from glassbox.config import to_dict


class LiveReplayError(RuntimeError):
    """Live replay cannot run or failed; the message says why."""


@dataclass
class LiveSummary:
    bag: str
    out: str
    nodes: dict
    messages_recorded: int
    notes: list

    def describe(self) -> str:
        lines = [f"recorded {self.messages_recorded} messages from the node processes into {self.out}"]
        for cap, s in self.nodes.items():
            lat = "" if s["latency_mean_ms"] is None else \
                f", latency mean {s['latency_mean_ms']:.1f} ms, p95 {s['latency_p95_ms']:.1f} ms"
            lines.append(f"  {cap:<13} sent {s['inputs_sent']}, received {s['outputs_received']}, "
                         f"dropped {s['dropped']}{lat}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def live_replay(bag: str | Path, out: str | Path, cfg: ReplayConfig = ReplayConfig(),
                topic_map: Mapping[str, str] | None = None, rate: float = 1.0, overwrite: bool = False,
                timeout_s: float = 3600.0) -> LiveSummary:
    if importlib.util.find_spec("glassbox_ros") is None or importlib.util.find_spec("rclpy") is None:
        raise LiveReplayError("live mode needs ROS 2: source the workspace (ros2_ws/install/setup.bash) first")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise LiveReplayError(f"output {out} exists (pass --overwrite to replace it)")
        import shutil
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "glassbox_ros.live_replay", str(bag), "--out", str(out),
               "--config-json", json.dumps(to_dict(cfg)), "--map-json", json.dumps(dict(topic_map or {})),
               "--rate", str(rate), "--summary", str(summary_path)]
        env = dict(os.environ)
        # Megabyte clouds and images between local processes need large shared-memory segments (see the
        # profile); a profile the user chose is kept.
        if "FASTDDS_DEFAULT_PROFILES_FILE" not in env and "FASTRTPS_DEFAULT_PROFILES_FILE" not in env:
            profile = Path(__file__).resolve().parents[5] / "config/dds/fastdds_local_large_data.xml"
            if profile.is_file():
                env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        if res.returncode != 0:
            raise LiveReplayError(res.stderr.strip()[-3000:] or f"live replay exited with {res.returncode}")
        data = json.loads(summary_path.read_text())
    fields = {f.name for f in dataclasses.fields(LiveSummary)}
    return LiveSummary(**{k: v for k, v in data.items() if k in fields})
