"""Shared helpers of the benchmarks: timing, a printed table, and JSON results with machine facts."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def time_ms(fn: Callable[[], object], repeat: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median and min wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples)}


def machine() -> dict[str, str | int]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count() or 0, "python": platform.python_version()}


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v if v is not None else "")


def write_results(name: str, rows: list[dict], **extra) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), "rows": rows, **extra}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path


ROOT = Path(__file__).resolve().parents[1]
#: capability -> shipped card file names, in order of preference
SHIPPED = {"lidar": ["spi_lidar.card.yaml"], "refiner": ["refiner.card.yaml"],
           "segmentation": ["bisenet.card.yaml", "bisenet_binary.card.yaml"], "fusion": ["gem.card.yaml"]}


def model_cards(folder: Path) -> dict[str, tuple[Path, str]]:
    """capability -> (card, where it came from): shipped cards first, else untrained networks
    (``tests/support`` must be on ``sys.path``)."""
    from support_models import make_camera_card, make_lidar_card
    cards = {}
    for cap, names in SHIPPED.items():
        found = [ROOT / "models" / n for n in names if (ROOT / "models" / n).is_file()]
        if found:
            cards[cap] = (found[0], f"shipped {found[0].name}")
        elif cap == "lidar":
            cards[cap] = (make_lidar_card(folder, 64, 512), "untrained SPI, 64 x 512 range image")
        else:
            cards[cap] = (make_camera_card(cap, folder), f"untrained {cap} network")
    return cards
