"""``glassbox replay`` with several bags, a glob, a list file or ``--cluster``: the fleet path.

``OUT/bags/<unit>-<key>/`` output bags, ``OUT/results/<unit>-<key>.json`` one record per unit (what a re-run
skips), ``OUT/hashes.json`` the bags' content hashes, ``OUT/report/`` (or ``--report``) fleet.html and fleet.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_fleet_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fleet (several bags, globs, @list.txt, or --cluster)")
    g.add_argument("--cluster", default=None, metavar="local[:N]|auto|ray://HOST:PORT",
                   help="run one Ray task per bag or chunk: a local Ray instance (N CPUs), the cluster this "
                        "machine joined with `ray start`, or a remote one; without it the bags run in this process")
    g.add_argument("--chunk-s", type=float, default=0.0,
                   help="cut bags longer than this many seconds into chunks, one task each (0: whole bags)")
    g.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs each task declares (and its threads)")
    g.add_argument("--gpus-per-capability", type=float, default=0.25,
                   help="GPU share each capability declares when the providers include cuda or tensorrt")
    g.add_argument("--max-retries", type=int, default=3, help="retries of a task whose worker died")
    g.add_argument("--no-resume", action="store_true", help="redo units already in OUT/results")


def is_fleet(args: argparse.Namespace) -> bool:
    """More than one bag, a pattern or list file, or a cluster: the fleet path. One plain bag: the plain replay."""
    first = str(args.bag[0])
    return (len(args.bag) > 1 or args.cluster is not None or first.startswith("@") or first.endswith(".txt")
            or any(c in first for c in "*?["))


def _progress(quiet: bool):
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=0, unit="bag", desc="fleet", dynamic_ncols=True)
    counts = {"ok": 0, "partial": 0, "failed": 0}

    def update(rec: dict, done: int, total: int) -> None:
        bar.total = total
        counts[rec["status"]] += 1
        if rec["status"] != "ok":
            bar.write(f"{rec['name']}: {rec['status']}: {rec['reason'].splitlines()[0]}")
        bar.set_postfix(counts, refresh=False)
        bar.update(done - bar.n)
    return update, bar.close


def run_fleet_command(args: argparse.Namespace, cfg) -> int:
    """Run the fleet, write its report, print the headline aggregates. Exit status 2 when a unit failed."""
    from glassbox.fleet.plan import FleetError
    from glassbox.fleet.report import aggregate, write_fleet_report
    from glassbox.fleet.run import RayExecutor, Resources, SerialExecutor, connect, run_fleet

    if args.live:
        print("glassbox replay: --live replays one bag; the fleet path replays offline", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    update, close = _progress(args.quiet)
    try:
        if args.cluster:
            connect(args.cluster)
            executor = RayExecutor(Resources.for_config(cfg, args.cpus_per_task, args.gpus_per_capability),
                                   args.max_retries)
        else:
            executor = SerialExecutor()
        run = run_fleet(args.bag, args.out, cfg, executor, topic_map=args.map, chunk_s=args.chunk_s,
                        resume=not args.no_resume, progress=update)
    except FleetError as exc:
        close()
        print(f"glassbox replay: {exc}", file=sys.stderr)
        return 2
    close()
    wall = time.perf_counter() - t0
    html = write_fleet_report(run.records, args.report or Path(args.out) / "report",
                              {"executor": run.executor, "cluster": args.cluster or "", "wall_s": round(wall, 2),
                               "ran": run.ran, "skipped": run.skipped})
    print(f"{len(run.units)} units: {run.ran} replayed, {run.skipped} already done, in {wall:.1f} s")
    print(f"report: {html}")
    agg = aggregate(run.records)
    for label, f in agg["figures"].items():
        if f["mean"] is not None:
            ci = f" (95 % CI {f['ci95'][0]:.3f} to {f['ci95'][1]:.3f})" if f["ci95"] else ""
            print(f"  {label:<28} {f['mean']:.3f}{ci} over {f['n']} units")
    return 0 if agg["partial"] + agg["failed"] == 0 else 2
