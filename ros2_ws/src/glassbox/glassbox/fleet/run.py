"""Running a fleet: units to tasks (Ray, or this process), records streamed back as they finish, resume.

Every finished unit's record is written at once to ``OUT/results/<name>-<key>.json`` (temp file, then rename),
so an interrupted run loses at most the units in flight; a re-run finds those files and skips their units.
A task whose worker dies is retried by Ray (``max_retries``); its record is the same as a clean run's.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from glassbox.bag.replay import ReplayConfig
from glassbox.fleet.plan import FleetError, HashCache, Unit, expand_bags, plan
from glassbox.fleet.tasks import run_unit, unit_dir_name

GPU_PROVIDERS = {"cuda", "tensorrt"}
KILL_HOOK_ENV = "GLASSBOX_FLEET_TEST_KILL"   # "<unit name>:<marker file>": that unit's first attempt kills its worker


@dataclass(frozen=True)
class Resources:
    """What one task declares to the scheduler. GPUs: ``gpus_per_capability`` for each capability that runs on
    a GPU provider (so four capabilities share one GPU at 0.25), at most 1."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    @classmethod
    def for_config(cls, cfg: ReplayConfig, cpus: float = 1.0, gpus_per_capability: float = 0.25) -> Resources:
        on_gpu = bool(GPU_PROVIDERS & set(cfg.providers))
        return cls(cpus, min(1.0, gpus_per_capability * len(cfg.capabilities)) if on_gpu else 0.0)


# ------------------------------------------------------------------------------------------------- executors
class SerialExecutor:
    """Units one after the other in this process: the fleet path without Ray."""

    name = "serial"

    def map(self, units: list[Unit], out_dir: Path, cfg: ReplayConfig, topic_map: dict | None) -> Iterator[dict]:
        for unit in units:
            yield run_unit(unit, out_dir, cfg, topic_map)


def _ray_unit(unit: Unit, out_dir: str, cfg: ReplayConfig, topic_map: dict | None) -> dict:
    """The Ray task. The kill hook (tests only) ends this worker process on the unit's first attempt."""
    hook = os.environ.get(KILL_HOOK_ENV, "")
    if hook:
        name, marker = hook.split(":", 1)
        if name == unit.name and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)
    return run_unit(unit, out_dir, cfg, topic_map)


class RayExecutor:
    """One Ray task per unit with the declared resources; results in the order they finish."""

    name = "ray"

    def __init__(self, resources: Resources = Resources(), max_retries: int = 3):
        self.resources = resources
        self.max_retries = max_retries

    def map(self, units: list[Unit], out_dir: Path, cfg: ReplayConfig, topic_map: dict | None) -> Iterator[dict]:
        import ray
        task = ray.remote(_ray_unit).options(num_cpus=self.resources.num_cpus, num_gpus=self.resources.num_gpus,
                                             max_retries=self.max_retries)
        cfg_ref = ray.put(cfg)
        pending = {task.remote(u, str(out_dir), cfg_ref, topic_map): u for u in units}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(done[0])
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as exc:   # the worker died more often than max_retries allows
                yield {"name": unit.name, "bag": unit.bag, "key": unit.key, "start_ns": unit.start_ns,
                       "end_ns": unit.end_ns, "status": "failed", "transient": True,
                       "reason": f"task lost after {self.max_retries} retries: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0]}", "frames": {}, "metrics": {}, "monitor": {},
                       "timing": {}}


def connect(cluster: str, temp_dir: str | None = None) -> None:
    """``local`` / ``local:N`` (a Ray instance on this machine with N CPUs), ``auto`` (the cluster this machine
    belongs to, started with ``ray start``) or ``ray://HOST:PORT`` (a remote cluster's client server)."""
    try:
        import ray
    except ImportError as exc:
        raise FleetError("--cluster needs Ray: pip install 'glassbox[fleet]' (or ray[default])") from exc
    if ray.is_initialized():
        return
    if cluster == "local" or cluster.startswith("local:"):
        n = cluster.partition(":")[2]
        if n and not n.isdigit():
            raise FleetError(f"--cluster local:N needs a number of CPUs, got '{cluster}'")
        ray.init(num_cpus=int(n) if n else None, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    elif cluster == "auto" or cluster.startswith("ray://"):
        ray.init(address=cluster, log_to_driver=False)
    else:
        raise FleetError(f"--cluster must be local[:N], auto or ray://HOST:PORT, got '{cluster}'")


# ------------------------------------------------------------------------------------------------ the store
class ResultStore:
    """``OUT/results``: one JSON record per finished unit, named by the unit, holding its key."""

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir) / "results"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, unit: Unit) -> Path:
        return self.dir / f"{unit_dir_name(unit)}.json"

    def get(self, unit: Unit) -> dict | None:
        p = self.path(unit)
        if not p.is_file():
            return None
        rec = json.loads(p.read_text())
        return rec if rec.get("key") == unit.key else None

    def put(self, unit: Unit, rec: dict) -> None:
        p = self.path(unit)
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rec, indent=1, default=str) + "\n")
        os.replace(tmp, p)


@dataclass
class FleetRun:
    """The records of every unit (done before or now, in plan order) and what this run did."""

    units: list[Unit]
    records: list[dict] = field(default_factory=list)
    skipped: int = 0
    ran: int = 0
    executor: str = ""


def run_fleet(bags: Iterable[str | Path], out_dir: str | Path, cfg: ReplayConfig = ReplayConfig(),
              executor: SerialExecutor | RayExecutor | None = None, topic_map: dict[str, str] | None = None,
              chunk_s: float = 0.0, resume: bool = True,
              progress: Callable[[dict, int, int], None] | None = None) -> FleetRun:
    """Plan, skip what ``out_dir`` already holds (``resume``), run the rest, store each record as it arrives.
    ``progress(record, done, total)`` is called once per unit, skipped ones included."""
    out_dir = Path(out_dir)
    paths = expand_bags(list(bags))
    if not paths:
        raise FleetError("no bags given")
    executor = executor or SerialExecutor()
    if cfg.threads == 0 and isinstance(executor, RayExecutor):   # one task's inference threads = its CPUs
        cfg = replace(cfg, threads=max(1, int(executor.resources.num_cpus)))
    units = plan(paths, cfg, topic_map, chunk_s, HashCache(out_dir / "hashes.json"))
    store = ResultStore(out_dir)
    by_key: dict[str, dict] = {}
    run = FleetRun(units, executor=executor.name)
    todo = []
    for u in units:
        rec = store.get(u) if resume else None
        if rec is None:
            todo.append(u)
            continue
        by_key[u.key] = rec
        run.skipped += 1
        if progress:
            progress(rec, len(by_key), len(units))
    index = {u.key: u for u in todo}
    for rec in executor.map(todo, out_dir, cfg, topic_map):
        if not rec.get("transient"):
            store.put(index[rec["key"]], rec)
        by_key[rec["key"]] = rec
        run.ran += 1
        if progress:
            progress(rec, len(by_key), len(units))
    run.records = [by_key[u.key] for u in units]
    return run


def identical(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two records of the same unit agree on everything but their timing."""
    def canonical(rec: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in rec.items() if k != "timing"}, sort_keys=True, default=str)
    return canonical(a) == canonical(b)
