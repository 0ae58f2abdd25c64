"""The work of one unit, wherever it runs (a Ray worker or this process): replay, then a JSON-able record.

The record's fields other than ``timing`` are a function of the unit's inputs alone, so a retried task gives the
same record; ``timing`` (wall and CPU time, per-stage latency, the worker's host) differs from run to run.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from glassbox.bag.replay import ReplayConfig, ReplayError, replay
from glassbox.fleet.plan import Unit

STATUSES = ("ok", "partial", "failed")   # partial: the bag broke part way; what came before it was replayed


def unit_dir_name(unit: Unit) -> str:
    return f"{unit.name.replace('#', '.chunk')}-{unit.key[:12]}"


def write_chunk(bag: Path, start_ns: int, end_ns: int, dest: Path) -> Path:
    """Copy the messages of ``bag`` logged in [start_ns, end_ns) into a new mcap bag, bytes unchanged."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    from glassbox.bag.typestore import make_typestore
    typestore = make_typestore()
    with AnyReader([bag], default_typestore=typestore) as reader:
        writer = Writer(dest, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        try:
            conns = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=typestore)
                     for c in reader.connections}
            for conn, t, raw in reader.messages(start=start_ns, stop=end_ns):
                writer.write(conns[conn.topic], t, raw)
        finally:
            writer.close()
    return dest


def _calibration(bag: Path, cfg: ReplayConfig) -> ReplayConfig:
    """A chunk is a new bag in a temporary folder: point the replay at the original's ``<bag>.calib.yaml``."""
    if cfg.calibration:
        return cfg
    for path in (bag.with_suffix(".calib.yaml"), bag / f"{bag.name}.calib.yaml", bag.parent / f"{bag.name}.calib.yaml"):
        if path.is_file():
            return replace(cfg, calibration=str(path))
    return cfg


def _record(unit: Unit, out_bag: Path, result: Any, status: str, reason: str) -> dict[str, Any]:
    metrics = dict(result.metrics) if result is not None else {}
    stamps = [f["stamp_ns"] for f in result.frames] if result is not None else []
    return {"name": unit.name, "bag": unit.bag, "key": unit.key, "start_ns": unit.start_ns, "end_ns": unit.end_ns,
            "status": status, "reason": reason, "out_bag": f"bags/{out_bag.name}",
            "duration_s": round((max(stamps) - min(stamps)) * 1e-9, 3) if stamps else 0.0,
            "frames": metrics.pop("frames", {}), "monitor": metrics.pop("monitor", {}),
            "rejected": metrics.pop("rejected", {}), "latency_ms": metrics.pop("latency_ms", {}),
            "metrics": metrics, "warnings": list(result.warnings) if result is not None else [],
            "messages_written": result.messages_written if result is not None else 0}


def run_unit(unit: Unit, out_dir: str | Path, cfg: ReplayConfig, topic_map: dict[str, str] | None = None) -> dict:
    """Replay one unit into ``out_dir/bags/<name>-<key>`` and return its record. A bad bag is a record with
    status ``partial`` or ``failed`` and the reason, never an exception; any other error is one too, with the
    traceback's last lines, so that one bag never sinks the fleet."""
    t0, c0 = time.perf_counter(), time.process_time()
    out_bag = Path(out_dir) / "bags" / unit_dir_name(unit)
    out_bag.parent.mkdir(parents=True, exist_ok=True)
    bag = Path(unit.bag)
    try:
        with tempfile.TemporaryDirectory(prefix="glassbox-chunk-") as tmp:
            source = write_chunk(bag, unit.start_ns, unit.end_ns, Path(tmp) / "chunk") if unit.chunked else bag
            run_cfg = _calibration(bag, cfg) if unit.chunked else cfg
            result = replay(source, out_bag, run_cfg, topic_map=topic_map, overwrite=True, keep_samples=0)
        rec = _record(unit, out_bag, result, "ok", "")
    except ReplayError as exc:
        partial = exc.result is not None and bool(exc.result.frames)
        rec = _record(unit, out_bag, exc.result, "partial" if partial else "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in the record with its traceback, not swallowed
        tb = traceback.format_exc(limit=-3)
        rec = _record(unit, out_bag, None, "failed", f"{type(exc).__name__}: {exc}\n{tb}")
    rec["timing"] = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3),
                     "latency_ms": rec.pop("latency_ms"), "host": socket.gethostname(), "pid": os.getpid()}
    return rec
