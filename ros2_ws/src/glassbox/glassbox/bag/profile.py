"""``glassbox profile``: record the entropy reference profile of a robot's own sensors from nominal bags.

The shipped model cards carry reference profiles measured on synthetic validation data; on a real robot every
layer sits elsewhere and the monitor is red from the first frame. The first step on a new robot is therefore to
record a drive in normal conditions and run::

    glassbox profile nominal.mcap [more.mcap ...] --out reference.yaml [--map lidar=/points,...]

which replays the bags through the suite (``glassbox.bag.replay.replay``, output discarded) and writes, per model,
the per-layer statistics of every entropy profile (``glassbox.monitor.layer_statistics``: mean, std, median,
robust std, 1 % / 99 % quantiles), the number of frames, the sensor topics, and the model file's sha256 from its
card. The monitor node takes the file in ``reference_files`` (beside the cards, which it overrides) and
``glassbox replay --reference-profile`` (``ReplayConfig.reference_profile``) monitors against it; a profile recorded for another model file
is refused with the reason (``glassbox.monitor.load_references``).
"""
from __future__ import annotations

import datetime
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from glassbox.monitor import layer_statistics

PROFILE_VERSION = 1


class ProfileError(ValueError):
    """The bags give no usable profile (no entropy, too few frames)."""


def _cards(cfg: Any) -> dict[str, Path]:
    """Capability -> the card the replay uses for it."""
    from glassbox.stages.build import card_path_for
    return {cap: card_path_for(cap, getattr(cfg, f"{cap}_card"), cfg.models_dir or None) for cap in cfg.capabilities}


def _model_table(series: list[tuple[int, dict[str, float]]], card: Any, card_path: Path,
                 sensors: list[str]) -> dict[str, Any]:
    layers = list(series[0][1])
    samples = np.array([[values.get(n, np.nan) for n in layers] for _, values in series])
    samples = samples[np.isfinite(samples).all(axis=1)]
    if len(samples) < 2:
        raise ProfileError(f"model '{card.name}': {len(samples)} finite entropy profile(s); a profile needs >= 2 "
                           "(>= 100 recommended)")
    stats = {n: {k: round(v, 6) for k, v in st.items()} for n, st in zip(layers, layer_statistics(samples))}
    return {"card": card_path.name, "card_sha256": card.sha256, "frames": int(len(samples)), "sensors": sensors,
            "layers": stats}


def record_profile(bags: Sequence[str | Path], out: str | Path, cfg: Any = None,
                   topic_map: Mapping[str, str] | None = None, progress=None) -> dict[str, Any]:
    """Replay ``bags`` (nominal recordings) and write their reference profile to ``out``; returns the table."""
    from glassbox.bag.replay import ReplayConfig, replay
    from glassbox.capabilities import get
    from glassbox.models.card import load_card

    cfg = cfg or ReplayConfig()
    cards = _cards(cfg)
    by_model = {load_card(p).name: (cap, load_card(p), p) for cap, p in cards.items()}
    series: dict[str, list] = {}
    sensors: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="glassbox-profile-") as tmp:
        for i, bag in enumerate(bags):
            result = replay(bag, Path(tmp) / f"out{i}", replace(cfg, entropy_every_n=1), topic_map=topic_map,
                            progress=progress)
            for model, s in result.entropy.items():
                series.setdefault(model, []).extend(s)
                cap = by_model[model][0] if model in by_model else ""
                roles = get(cap).roles if cap else ()
                sensors.setdefault(model, set()).update(result.topics[r] for r in roles if r in result.topics)
    if not series:
        raise ProfileError(f"no entropy profiles in {', '.join(map(str, bags))}: no capability found its sensor")
    models = {m: _model_table(s, by_model[m][1], by_model[m][2], sorted(sensors[m]))
              for m, s in sorted(series.items()) if m in by_model}
    table = {"glassbox_profile": PROFILE_VERSION,
             "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "bags": [str(b) for b in bags], "models": models}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Entropy reference profile recorded by `glassbox profile` (docs/monitor.md)\n"
                   + yaml.safe_dump(table, sort_keys=False))
    return table
