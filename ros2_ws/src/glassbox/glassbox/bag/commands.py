"""``glassbox replay`` and ``glassbox demo``: argument parsing and printing around ``glassbox.bag.replay``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _parse_map(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--map entries look like role=/topic, got '{item}'")
        role, topic = item.split("=", 1)
        out[role.strip()] = topic.strip()
    return out


def add_replay_args(p: argparse.ArgumentParser) -> None:
    from glassbox.fleet.commands import add_fleet_args
    p.add_argument("bag", type=Path, nargs="+",
                   help="input ROS 2 bag (mcap file, or rosbag2 folder with mcap or sqlite3); several bags, globs "
                        "or @list.txt: a fleet run (see --cluster)")
    p.add_argument("--out", type=Path, required=True, help="output bag folder (mcap storage); fleet: output folder")
    p.add_argument("--map", type=_parse_map, default={}, metavar="ROLE=TOPIC,...",
                   help="topics by role: lidar, rgb (or camera), thermal, gt_lidar, gt_rgb, gt_semantic, lighting; "
                        "roles not given are found by message type and content")
    p.add_argument("--report", type=Path, default=None, help="write report.html, metrics.json and plots here")
    p.add_argument("--config", type=Path, default=None, help="ReplayConfig YAML (see config/replay.yaml)")
    p.add_argument("--capabilities", default=None, help="comma-separated subset of lidar,refiner,segmentation,fusion")
    p.add_argument("--models", type=Path, default=None, help="folder with the model cards (default: models/)")
    p.add_argument("--backend", choices=("onnxruntime", "torch"), default=None)
    p.add_argument("--providers", default=None, help="ONNX Runtime providers in order, e.g. tensorrt,cuda,cpu")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    p.add_argument("--live", action="store_true",
                   help="play the bag into the node processes over DDS and record their outputs (needs ROS 2)")
    p.add_argument("--rate", type=float, default=1.0, help="live mode: playback rate factor")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fleet_args(p)
    p.add_argument("--reference-profile", type=Path, default=None,
                   help="monitor against this profile from `glassbox profile` instead of the cards' references")


def _config(args: argparse.Namespace):
    from dataclasses import replace

    from glassbox.bag.replay import ReplayConfig
    from glassbox.config import load_config
    cfg = load_config(args.config, ReplayConfig) if args.config else ReplayConfig()
    if args.capabilities:
        cfg = replace(cfg, capabilities=tuple(c.strip() for c in args.capabilities.split(",") if c.strip()))
    if args.models:
        cfg = replace(cfg, models_dir=str(args.models))
    if args.backend:
        cfg = replace(cfg, backend=args.backend)
    if args.providers:
        cfg = replace(cfg, providers=tuple(p.strip() for p in args.providers.split(",")))
    if getattr(args, "reference_profile", None):
        cfg = replace(cfg, reference_profile=str(args.reference_profile))
    return cfg


def _progress(quiet: bool):
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=0, unit="msg", desc="replay", dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        if done % 5 == 0 or done == total:
            bar.refresh()
    return update, bar.close


def run_replay(args: argparse.Namespace) -> int:
    from glassbox.bag.replay import ReplayError, replay, write_metrics
    from glassbox.monitor import ReferenceProfileError
    from glassbox.config import ConfigError

    try:
        cfg = _config(args)
    except (ConfigError, ValueError) as exc:
        print(f"glassbox replay: {exc}", file=sys.stderr)
        return 2
    from glassbox.fleet.commands import is_fleet, run_fleet_command
    if is_fleet(args):
        return run_fleet_command(args, cfg)
    args.bag = args.bag[0]
    if args.live:
        from glassbox.bag.live import LiveReplayError, live_replay
        try:
            summary = live_replay(args.bag, args.out, cfg, topic_map=args.map, rate=args.rate,
                                  overwrite=args.overwrite)
        except (LiveReplayError, ReplayError, OSError) as exc:
            print(f"glassbox replay --live: {exc}", file=sys.stderr)
            return 2
        print(summary.describe())
        return 0
    update, close = _progress(args.quiet)
    t0 = time.perf_counter()
    status = 0
    try:
        result = replay(args.bag, args.out, cfg, topic_map=args.map, overwrite=args.overwrite, progress=update)
    except ReferenceProfileError as exc:
        close()
        print(f"glassbox replay: {exc}", file=sys.stderr)
        return 2
    except ReplayError as exc:
        close()
        print(f"glassbox replay: {exc}", file=sys.stderr)
        result = getattr(exc, "result", None)
        if result is None:
            return 2
        status = 2
    close()
    result.wall_time_s = time.perf_counter() - t0
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.report:
        from glassbox.bag.report import write_report
        html = write_report(result, args.report, warn_z=cfg.monitor.warn_z)
        print(f"report: {html}")
    elif result.metrics:
        write_metrics(result, Path(args.out).with_suffix(".metrics.json"))
    print(f"wrote {result.messages_written} messages to {result.out_bag} in {result.wall_time_s:.1f} s")
    print(summarize(result.metrics))
    return status


def summarize(metrics: dict) -> str:
    """A few lines: the headline metric per capability and segment, and the monitor's ERROR/WARN shares."""
    from glassbox.capabilities import all_capabilities
    lines = []
    for c in all_capabilities():
        cap, (key, label) = c.name, (c.headline or ("", ""))
        m = metrics.get(cap)
        if not key and isinstance(m, dict):
            continue
        if isinstance(m, dict):
            parts = ", ".join(f"{seg} {v.get(key) if v.get(key) is not None else '—'}" for seg, v in m.items())
            lines.append(f"  {cap:<13} {label}: {parts}")
        elif isinstance(m, str):
            lines.append(f"  {cap:<13} {m}")
    for model, segs in metrics.get("monitor", {}).items():
        parts = ", ".join(f"{seg} {v['WARN'] + v['ERROR']:.0%}" for seg, v in segs.items() if seg != "all")
        lines.append(f"  monitor {model:<20} WARN+ERROR share: {parts}")
    return "\n".join(lines)


def add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the drive, outputs and report")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the synthetic drive (s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--camera-width", type=int, default=320, help="RGB and thermal width (px)")
    p.add_argument("--camera-height", type=int, default=256, help="RGB and thermal height (px)")
    p.add_argument("--models", type=Path, default=None, help="folder with the model cards (default: models/)")
    p.add_argument("--fault", type=_parse_fault, default=_parse_fault(DEMO_FAULT), metavar="NAME:START-END[:SEVERITY]",
                   help=f"sensor fault injected into the drive (glassbox.faults; default {DEMO_FAULT}; "
                        "'none': no fault)")
    p.add_argument("--quiet", action="store_true")


DEMO_FAULT = "rain_clutter:1.5-3.5:1.0"     # LiDAR, in the daylight segment: the monitor should catch it


def _parse_fault(text: str) -> tuple:
    """``NAME:START-END[:SEVERITY]`` -> ((name, start_s, end_s, severity),); 'none' -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        name, window, *sev = text.split(":")
        start, end = (float(v) for v in window.split("-"))
        return ((name.strip(), start, end, float(sev[0]) if sev else 1.0),)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fault looks like NAME:START-END[:SEVERITY], got '{text}'") from None


def run_demo(args: argparse.Namespace) -> int:
    """Synthetic drive (day -> glare -> night) -> every pipeline with the shipped models -> report."""
    import shutil

    from glassbox.bag.replay import ReplayConfig, ReplayError, replay
    from glassbox.bag.report import write_report
    from glassbox.sim.camera import rgb_camera, thermal_camera
    from glassbox.sim.drive import DriveConfig, write_drive
    from glassbox.capabilities import names
    from glassbox.stages.build import card_path_for

    missing = [str(card_path_for(c, models_dir=args.models)) for c in names()
               if not card_path_for(c, models_dir=args.models).is_file()]
    if missing:
        print("glassbox demo: shipped models missing: " + ", ".join(missing) +
              "\n  (each is trained by `glassbox-train --config config/train/<task>.yaml --export models/`)",
              file=sys.stderr)
        return 2
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    drive = out / "drive.mcap"
    print(f"[1/3] rendering a {args.seconds:g} s synthetic drive (day -> glare -> night) ..."
          + "".join(f" with {n} injected at {a:g}-{b:g} s" for n, a, b, _ in args.fault), flush=True)
    # 320x256 cameras: the resolution the shipped camera models and their reference entropy profiles were made at.
    summary = write_drive(drive, DriveConfig(seconds=args.seconds, seed=args.seed,
                                             rgb=rgb_camera(width=args.camera_width, height=args.camera_height),
                                             thermal=thermal_camera(width=args.camera_width,
                                                                    height=args.camera_height),
                                             faults=args.fault))
    t1 = time.perf_counter()
    print(f"      {sum(summary.messages.values())} messages in {t1 - t0:.0f} s -> {drive}")
    from glassbox.capabilities import all_capabilities
    print("[2/3] replaying it through " + ", ".join(c.title for c in all_capabilities()) + " ...", flush=True)
    update, close = _progress(args.quiet)
    try:
        result = replay(drive, out / "perception", ReplayConfig(models_dir=str(args.models or "")), progress=update)
    except ReplayError as exc:
        close()
        print(f"glassbox demo: {exc}", file=sys.stderr)
        return 2
    close()
    result.wall_time_s = time.perf_counter() - t1
    print("[3/3] writing the report ...", flush=True)
    html = write_report(result, out / "report")
    print(f"\nglassbox demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"  report:      {html}\n  metrics:     {out / 'report' / 'metrics.json'}\n  output bag:  {out / 'perception'}")
    print(summarize(result.metrics))
    return 0
