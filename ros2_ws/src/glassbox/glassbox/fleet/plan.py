"""Planning a fleet run: which bags, which time chunks, and the key that says whether a unit is already done.

A *unit* is one bag, or one time chunk of a long bag. Its key is the sha256 of the bag's content, the model cards'
bytes (each card records its model file's sha256, so a retrained model changes the key), the replay settings and
the chunk window: the same key means the same result, so a re-run skips it.
"""
from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from glassbox.bag.replay import ReplayConfig, card_setting
from glassbox.models.card import sha256_file
from glassbox.stages.build import card_path_for

BAG_SUFFIXES = (".mcap", ".db3")


class FleetError(RuntimeError):
    """The fleet run cannot be planned (no bags, a missing list file, a bad cluster address)."""


@dataclass(frozen=True)
class Unit:
    """One task: ``bag`` replayed over [start_ns, end_ns) (0, 0: the whole bag)."""

    bag: str
    key: str
    name: str
    start_ns: int = 0
    end_ns: int = 0

    @property
    def chunked(self) -> bool:
        return self.end_ns > 0


def expand_bags(items: list[str | Path]) -> list[Path]:
    """Bags from paths, glob patterns and list files (``@list.txt`` or ``*.txt``: one path or pattern a line,
    ``#`` comments, relative to the list's folder). Order kept, duplicates dropped."""
    out: list[Path] = []
    for item in map(str, items):
        if item.startswith("@") or item.endswith(".txt"):
            listing = Path(item.lstrip("@"))
            if not listing.is_file():
                raise FleetError(f"bag list not found: {listing}")
            lines = [ln.split("#", 1)[0].strip() for ln in listing.read_text().splitlines()]
            out += expand_bags([p if Path(p).is_absolute() else str(listing.parent / p) for p in lines if p])
        elif any(c in item for c in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise FleetError(f"no bag matches {item}")
            out += [Path(m) for m in matches]
        else:
            out.append(Path(item))
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def bag_files(bag: Path) -> list[Path]:
    """The files whose bytes make up a bag: the file itself, or a rosbag2 folder's storage files and metadata."""
    if bag.is_file():
        return [bag]
    if bag.is_dir():
        return sorted(p for p in bag.rglob("*")
                      if p.is_file() and (p.suffix in BAG_SUFFIXES or p.name == "metadata.yaml"))
    return []


class HashCache:
    """Content hashes of bags, remembered by (path, size, mtime) in a JSON file so that a re-run reads no bag
    twice. A missing bag hashes to its path: planned, then reported as missing by its task."""

    def __init__(self, path: Path | None):
        self.path = path
        self.known: dict[str, list] = json.loads(path.read_text()) if path and path.is_file() else {}

    def bag_hash(self, bag: Path) -> str:
        h = hashlib.sha256()
        files = bag_files(bag)
        if not files:
            return hashlib.sha256(f"missing:{bag.resolve()}".encode()).hexdigest()
        for f in files:
            st = f.stat()
            entry = self.known.get(str(f.resolve()))
            if entry is None or entry[:2] != [st.st_size, st.st_mtime_ns]:
                entry = [st.st_size, st.st_mtime_ns, sha256_file(f)]
                self.known[str(f.resolve())] = entry
            h.update(f"{f.relative_to(bag) if f != bag else ''}:{entry[2]}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.known, indent=1) + "\n")


def config_hash(cfg: ReplayConfig, topic_map: dict[str, str] | None = None) -> str:
    """sha256 of the model cards in use and of every replay setting but the card paths (moving the models folder
    does not redo the fleet) and the thread count (a speed setting, which the fleet sets per task)."""
    h = hashlib.sha256()
    for cap in cfg.capabilities:
        card = card_path_for(cap, card_setting(cfg, cap), cfg.models_dir or None)
        h.update(f"{cap}:{sha256_file(card) if card.is_file() else 'missing:' + str(card)}\n".encode())
    settings = {k: v for k, v in asdict(cfg).items()
                if not k.endswith("_card") and k not in ("cards", "models_dir", "threads")}
    h.update(json.dumps([settings, sorted((topic_map or {}).items())], sort_keys=True, default=str).encode())
    return h.hexdigest()


def bag_span_ns(bag: Path) -> tuple[int, int]:
    """(first, last) log time of a bag from its index; (0, 0) when it cannot be opened (its task reports why)."""
    from rosbags.highlevel import AnyReader

    from glassbox.bag.typestore import make_typestore
    try:
        with AnyReader([bag], default_typestore=make_typestore()) as reader:
            return int(reader.start_time), int(reader.end_time)
    except Exception:  # noqa: BLE001 - unreadable bags are planned whole; their replay gives the reason
        return 0, 0


def plan(bags: list[Path], cfg: ReplayConfig, topic_map: dict[str, str] | None = None, chunk_s: float = 0.0,
         hash_cache: HashCache | None = None) -> list[Unit]:
    """The units of a fleet run, in input order; bags longer than ``chunk_s`` (> 0) are cut into chunks."""
    cache = hash_cache or HashCache(None)
    cfg_key = config_hash(cfg, topic_map)
    units = []
    for bag in bags:
        base = hashlib.sha256(f"{cache.bag_hash(bag)}:{cfg_key}".encode()).hexdigest()
        name = bag.name[: -len(bag.suffix)] if bag.suffix in BAG_SUFFIXES else bag.name
        t0, t1 = bag_span_ns(bag) if chunk_s > 0 else (0, 0)
        step = int(chunk_s * 1e9)
        if chunk_s <= 0 or t1 - t0 <= step:
            units.append(Unit(str(bag), base, name))
            continue
        for i, start in enumerate(range(t0, t1 + 1, step)):
            end = min(start + step, t1 + 1)
            key = hashlib.sha256(f"{base}:{start}:{end}".encode()).hexdigest()
            units.append(Unit(str(bag), key, f"{name}#{i}", start, end))
    cache.save()
    return units
