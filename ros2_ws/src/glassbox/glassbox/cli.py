"""The ``glassbox`` command line: one sub-command per task (``glassbox <command> --help`` for details).

Each sub-command lives in a ``_cmd_<name>(args)`` function registered in ``COMMANDS`` together with a function
adding its arguments, so new commands are added without touching the others.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def _add_sim(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=20.0, help="drive duration in seconds (default 20)")
    p.add_argument("--out", type=Path, default=Path("drive.mcap"),
                   help="output: a single mcap file when it ends in .mcap, else a rosbag2 folder")
    p.add_argument("--seed", type=int, default=0, help="scene and noise seed (same seed, same bag)")
    p.add_argument("--lidar", default="hdl64", help="LiDAR preset: vlp16, vlp32c, hdl32, hdl64, os1_64, os1_128 "
                   "(glassbox.lidar.sensors)")
    p.add_argument("--lidar-hz", type=float, default=10.0)
    p.add_argument("--rgb-hz", type=float, default=15.0)
    p.add_argument("--thermal-hz", type=float, default=10.0)
    p.add_argument("--width", type=int, default=640, help="camera width in pixels (RGB and thermal)")
    p.add_argument("--height", type=int, default=512, help="camera height in pixels (RGB and thermal)")
    p.add_argument("--segments", default="day,glare,night",
                   help="comma-separated lighting segments in order (day, glare, dusk, night)")
    p.add_argument("--workers", type=int, default=0, help="rendering processes (default 0: one per CPU core)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _cmd_sim(args: argparse.Namespace) -> int:
    from glassbox.sim.camera import rgb_camera, thermal_camera
    from glassbox.sim.drive import DriveConfig, DriveError, write_drive
    from glassbox.sim.lidar import LidarError

    try:
        cfg = DriveConfig(seconds=args.seconds, seed=args.seed, lidar=args.lidar, lidar_hz=args.lidar_hz,
                          rgb_hz=args.rgb_hz, thermal_hz=args.thermal_hz,
                          segments=tuple(s.strip() for s in args.segments.split(",") if s.strip()),
                          rgb=rgb_camera(width=args.width, height=args.height),
                          thermal=thermal_camera(width=args.width, height=args.height), workers=args.workers)
    except (DriveError, LidarError, ValueError) as exc:
        print(f"glassbox sim: {exc}", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done == total or done % 25 == 0):
            print(f"\rrendered {done}/{total} captures", end="" if done < total else "\n", flush=True)

    try:
        summary = write_drive(args.out, cfg, progress=progress)
    except DriveError as exc:
        print(f"glassbox sim: {exc}", file=sys.stderr)
        return 2
    total = sum(summary.messages.values())
    print(f"wrote {summary.path} ({total} messages, {summary.seconds_rendered:g} s of driving) in "
          f"{summary.wall_s:.1f} s; calibration: {summary.calibration_path}")
    return 0


def _add_sim_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("kitti", "coco_rgbt", "segmentation"), required=True)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--out", type=Path, required=True, help="dataset root folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lidar", default="hdl64")
    p.add_argument("--workers", type=int, default=0, help="rendering processes (default 0: one per CPU core)")


def _cmd_sim_dataset(args: argparse.Namespace) -> int:
    from glassbox.datasets.export import export_synthetic
    from glassbox.datasets.synthetic import DatasetError

    try:
        root = export_synthetic(args.out, args.format, args.frames, split=args.split, seed=args.seed, lidar=args.lidar,
                                workers=args.workers)
    except (DatasetError, ValueError) as exc:
        print(f"glassbox sim-dataset: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.frames} {args.split} frames in the {args.format} layout under {root}")
    return 0


def _add_replay(p: argparse.ArgumentParser) -> None:
    from glassbox.bag.commands import add_replay_args
    add_replay_args(p)


def _cmd_replay(args: argparse.Namespace) -> int:
    from glassbox.bag.commands import run_replay
    return run_replay(args)


def _add_demo(p: argparse.ArgumentParser) -> None:
    from glassbox.bag.commands import add_demo_args
    add_demo_args(p)


def _cmd_demo(args: argparse.Namespace) -> int:
    from glassbox.bag.commands import run_demo
    return run_demo(args)


def _add_profile(p: argparse.ArgumentParser) -> None:
    from glassbox.bag.commands import _parse_map
    p.add_argument("bags", type=Path, nargs="+", help="nominal recordings of this robot (mcap or rosbag2 folders)")
    p.add_argument("--out", type=Path, required=True, help="reference profile YAML to write")
    p.add_argument("--map", type=_parse_map, default={}, metavar="ROLE=TOPIC,...",
                   help="topics by role, as for `glassbox replay`")
    p.add_argument("--capabilities", default=None, help="comma-separated subset of lidar,refiner,segmentation,fusion")
    p.add_argument("--models", type=Path, default=None, help="folder with the model cards (default: models/)")
    p.add_argument("--config", type=Path, default=None, help="ReplayConfig YAML (see config/replay.yaml)")


def _cmd_profile(args: argparse.Namespace) -> int:
    from glassbox.bag.commands import _config
    from glassbox.bag.profile import ProfileError, record_profile
    from glassbox.bag.replay import ReplayError
    from glassbox.config import ConfigError

    args.backend = args.providers = None
    try:
        table = record_profile(args.bags, args.out, _config(args), topic_map=args.map)
    except (ProfileError, ReplayError, ConfigError, ValueError) as exc:
        print(f"glassbox profile: {exc}", file=sys.stderr)
        return 2
    for model, entry in table["models"].items():
        print(f"  {model:<14} {entry['frames']} frames, {len(entry['layers'])} layers from "
              f"{', '.join(entry['sensors'])}")
    print(f"wrote {args.out}: pass it to the monitor node in reference_files, or to `glassbox replay "
          "--reference-profile`")
    return 0


# name -> (help, add-arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "sim": ("render a synthetic drive (LiDAR, RGB, thermal, ground truth) into a ROS 2 bag", _add_sim, _cmd_sim),
    "sim-dataset": ("write synthetic frames as a KITTI, COCO RGB-thermal or segmentation-PNG dataset",
                    _add_sim_dataset, _cmd_sim_dataset),
    "replay": ("replay a ROS 2 bag (or a fleet of them, on Ray with --cluster) through the perception pipelines: "
               "output bags, metrics, report",
               _add_replay, _cmd_replay),
    "demo": ("synthetic drive -> the whole suite with the shipped models -> report", _add_demo, _cmd_demo),
    "profile": ("record the entropy reference profile of this robot's sensors from nominal bags (first step on a "
                "new robot)", _add_profile, _cmd_profile),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glassbox", description="glassbox: interpretable perception for ROS 2")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, (help_text, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
