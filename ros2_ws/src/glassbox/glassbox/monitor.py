"""Entropy health monitor: live per-layer entropy held against a model's reference profile.

For every probed layer the monitor keeps an exponentially smoothed z-score
``z = (H - mean_ref) / max(std_ref, min_std_nats)`` and maps the largest |z| of a model to a level:
OK below ``warn_z``, WARN from ``warn_z``, ERROR from ``error_z``. Levels rise at once and fall only when |z|
drops below ``hysteresis`` times the threshold, so a layer hovering at a threshold does not flap. A model
not heard from for ``stale_after_s`` is STALE. ``configure`` changes the settings while it runs (every level is
judged again at once) and ``reset`` forgets a model's smoothed state when its time restarts. The ROS node
``entropy_monitor_node`` turns the states into ``diagnostic_msgs/DiagnosticArray``; the bag replay uses this
class directly.

Reference files are YAML, either a table of models (what ``glassbox profile`` records on a robot's own nominal
bags, see ``glassbox.bag.profile``; it adds the frames, sensors, card sha256 and robust spreads)::

    models:
      spi_lidar:
        card_sha256: e9023f20...
        layers:
          backbone.stage1.0: {mean: 812.4, std: 3.1}

or a model card (``glassbox.models.card``) whose ``entropy_reference`` lists layer names with their mean and
std (recorded on the synthetic validation data the model was trained for). A recorded profile overrides a
card's reference, and is refused when it was recorded for another model file.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml


class Level(enum.IntEnum):
    """Health levels, numerically equal to diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


class ReferenceProfileError(ValueError):
    """A reference profile file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class LayerReference:
    mean: float
    std: float


@dataclass(frozen=True)
class MonitorConfig:
    warn_z: float = 3.0            # |z| at which a layer is WARN
    error_z: float = 6.0           # |z| at which a layer is ERROR
    smoothing: float = 0.3         # EMA weight of the newest z (1.0 = no smoothing)
    hysteresis: float = 0.8        # a level is left only when |z| < hysteresis * its threshold
    min_std_nats: float = 1e-3     # floor on the reference std, so a constant reference layer cannot give z = inf
    stale_after_s: float = 5.0     # no profile for this long -> STALE
    worst_layers: int = 3          # how many layers to name in the status message
    min_similarity: float = 0.6    # a fault signature is named when its cosine similarity reaches this

    def __post_init__(self) -> None:
        if not 0 < self.warn_z < self.error_z:
            raise ValueError(f"need 0 < warn_z < error_z, got {self.warn_z}, {self.error_z}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if not 0 < self.hysteresis <= 1:
            raise ValueError(f"hysteresis must be in (0, 1], got {self.hysteresis}")


def _parse_layers(layers: object, source: str, model: str) -> dict[str, LayerReference]:
    if not isinstance(layers, Mapping) or not layers:
        raise ReferenceProfileError(f"{source}: model '{model}' has no layer table")
    out = {}
    for name, stats in layers.items():
        try:
            mean, std = float(stats["mean"]), float(stats["std"])
        except (TypeError, KeyError, ValueError):
            raise ReferenceProfileError(f"{source}: layer '{name}' of model '{model}' needs numeric 'mean' and "
                                        "'std'") from None
        if not math.isfinite(mean) or not math.isfinite(std) or std < 0:
            raise ReferenceProfileError(f"{source}: layer '{name}' of model '{model}' has invalid mean/std "
                                        f"{mean}, {std}")
        out[str(name)] = LayerReference(mean, std)
    return out


def _card_reference(path: Path) -> tuple[str, str, dict[str, LayerReference] | None]:
    """(model name, model sha256, layer table or None) of a model card."""
    from glassbox.models.card import ModelCardError, load_card
    try:
        card = load_card(path)
    except ModelCardError as exc:
        raise ReferenceProfileError(str(exc)) from None
    ref = card.entropy_reference
    if ref is None:
        return card.name, card.sha256, None
    table = {n: {"mean": m, "std": s} for n, m, s in zip(ref.layer_names, ref.mean_nats, ref.std_nats)}
    return card.name, card.sha256, _parse_layers(table, str(path), card.name)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ReferenceProfileError(f"{path}: reference file not found") from None
    except yaml.YAMLError as exc:
        raise ReferenceProfileError(f"{path}: not valid YAML: {exc}") from None


def load_references(paths: Sequence[str | Path], allow_missing: bool = False) -> dict[str, dict[str, LayerReference]]:
    """Read reference profiles (model -> layer -> mean/std) from YAML tables or model cards.

    A ``models:`` table (a profile recorded by ``glassbox profile``, or written by hand) takes precedence over
    the reference a model card carries, whatever the order of ``paths``. A profile entry that names the
    ``card_sha256`` it was recorded with is refused when a card of the same model with another sha256 is among
    ``paths``: its statistics describe another network. A model card without a reference profile is an error,
    unless ``allow_missing`` or a profile covers it.
    """
    cards: dict[str, tuple[str, dict[str, LayerReference] | None, Path]] = {}
    tables: dict[str, tuple[str, dict[str, LayerReference], Path]] = {}
    for path in map(Path, paths):
        data = _read_yaml(path)
        if isinstance(data, Mapping) and isinstance(data.get("models"), Mapping):
            for model, entry in data["models"].items():
                layers = entry.get("layers") if isinstance(entry, Mapping) else None
                sha = str(entry.get("card_sha256", "")) if isinstance(entry, Mapping) else ""
                tables[str(model)] = (sha, _parse_layers(layers, str(path), str(model)), path)
        elif isinstance(data, Mapping) and "entropy_reference" in data:
            name, sha, layers = _card_reference(path)
            cards[name] = (sha, layers, path)
        else:
            raise ReferenceProfileError(f"{path}: expected a 'models:' table or a model card with an "
                                        "'entropy_reference'")
    for model, (sha, _, path) in tables.items():
        if model in cards and sha and sha != cards[model][0]:
            raise ReferenceProfileError(
                f"{path}: the profile of model '{model}' was recorded with the model whose sha256 is {sha[:12]}..., "
                f"but {cards[model][2]} is sha256 {cards[model][0][:12]}...: a profile describes one network only; "
                f"record a new one with `glassbox profile`")
    refs = {m: layers for m, (_, layers, _) in cards.items() if layers is not None}
    missing = [(m, p) for m, (_, layers, p) in cards.items() if layers is None and m not in tables]
    if missing and not allow_missing:
        raise ReferenceProfileError(f"{missing[0][1]}: model card '{missing[0][0]}' has no entropy_reference")
    refs.update({m: layers for m, (_, layers, _) in tables.items()})
    return refs


def layer_statistics(samples: np.ndarray) -> list[dict[str, float]]:
    """Per column of ``samples`` (frames, layers), nats: mean, std, median, robust std (1.4826 * MAD, the std
    of a Gaussian with that MAD), and the 1 % and 99 % quantiles."""
    x = np.asarray(samples, np.float64)
    median = np.median(x, axis=0)
    mad = np.median(np.abs(x - median), axis=0)
    p01, p99 = np.percentile(x, [1.0, 99.0], axis=0)
    return [{"mean": float(a), "std": float(b), "median": float(c), "robust_std": float(1.4826 * d),
             "p01": float(e), "p99": float(f)}
            for a, b, c, d, e, f in zip(x.mean(axis=0), x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1]),
                                        median, mad, p01, p99)]


# ------------------------------------------------------------------------------------------- fault signatures
def load_signatures(path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """Fault signatures: model -> fault class -> layer -> mean z-score of that fault (written by the fault
    benchmark, ``bench/bench_monitor.py``, as ``signatures: {model: {fault: {layer: z}}}``)."""
    path = Path(path)
    data = _read_yaml(path)
    table = data.get("signatures") if isinstance(data, Mapping) else None
    if not isinstance(table, Mapping):
        raise ReferenceProfileError(f"{path}: expected a 'signatures:' table")
    try:
        return {str(m): {str(f): {str(k): float(v) for k, v in z.items()} for f, z in faults.items()}
                for m, faults in table.items()}
    except (AttributeError, TypeError, ValueError):
        raise ReferenceProfileError(f"{path}: signatures must map model -> fault -> layer -> number") from None


def nearest_signature(z: Mapping[str, float], signatures: Mapping[str, Mapping[str, float]]
                      ) -> tuple[str, float] | None:
    """The fault whose signature is most similar to the z-vector ``z`` (cosine similarity over the layers both
    name), or None without signatures or finite z-scores."""
    best: tuple[str, float] | None = None
    for fault, sig in signatures.items():
        common = [k for k in sig if k in z and math.isfinite(z[k])]
        a = np.array([z[k] for k in common])
        b = np.array([sig[k] for k in common])
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        if norm > 0 and (best is None or float(a @ b) / norm > best[1]):
            best = (fault, float(a @ b) / norm)
    return best


@dataclass
class ModelHealth:
    """Current health of one model, as reported on /diagnostics."""

    model_name: str
    level: Level
    message: str
    z_scores: dict[str, float] = field(default_factory=dict)   # smoothed, per layer
    worst_layers: list[tuple[str, float]] = field(default_factory=list)
    frames: int = 0
    unknown_layers: list[str] = field(default_factory=list)
    last_stamp_ns: int = 0
    likely_fault: tuple[str, float] | None = None               # (fault class, similarity) when WARN/ERROR


class EntropyMonitor:
    """Holds live entropy profiles against references; one instance watches any number of models.

    With ``signatures`` (:func:`load_signatures`), a WARN or ERROR status also names the fault class whose
    signature is nearest to the model's current z-vector, with its similarity."""

    def __init__(self, references: Mapping[str, Mapping[str, LayerReference]], cfg: MonitorConfig = MonitorConfig(),
                 signatures: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None):
        self.references = {m: dict(layers) for m, layers in references.items()}
        self.cfg = cfg
        self.signatures = {m: dict(faults) for m, faults in (signatures or {}).items()}
        self._z: dict[str, dict[str, float]] = {}
        self._level: dict[str, Level] = {}
        self._health: dict[str, ModelHealth] = {}
        self._last_seen_s: dict[str, float] = {}

    def _level_from(self, zmax: float, previous: Level) -> Level:
        c = self.cfg
        if zmax >= c.error_z:
            return Level.ERROR
        if previous == Level.ERROR and zmax >= c.hysteresis * c.error_z:
            return Level.ERROR
        if zmax >= c.warn_z:
            return Level.WARN
        if previous in (Level.WARN, Level.ERROR) and zmax >= c.hysteresis * c.warn_z:
            return Level.WARN
        return Level.OK

    def update(self, model_name: str, layer_names: Sequence[str], entropy_nats: Sequence[float],
               stamp_ns: int = 0, now_s: float = 0.0) -> ModelHealth:
        """Take one profile; return the model's health after it."""
        self._last_seen_s[model_name] = now_s
        ref = self.references.get(model_name)
        if ref is None:
            health = ModelHealth(model_name, Level.WARN, f"no reference profile for model '{model_name}'",
                                 last_stamp_ns=stamp_ns)
            self._health[model_name] = health
            return health
        values = np.asarray(entropy_nats, dtype=np.float64)
        z_state = self._z.setdefault(model_name, {})
        unknown, bad = [], []
        a = self.cfg.smoothing
        for name, value in zip(layer_names, values):
            r = ref.get(name)
            if r is None:
                unknown.append(name)
                continue
            if not math.isfinite(value):
                bad.append(name)
                z = math.inf
            else:
                z = (value - r.mean) / max(r.std, self.cfg.min_std_nats)
            previous = z_state.get(name)
            z_state[name] = z if previous is None or not math.isfinite(previous) or not math.isfinite(z) \
                else a * z + (1 - a) * previous
        previous_frames = self._health[model_name].frames if model_name in self._health else 0
        health = self._assess(model_name, self._level.get(model_name, Level.OK), previous_frames + 1, unknown,
                              stamp_ns, bad)
        self._health[model_name] = health
        return health

    def _assess(self, model_name: str, previous: Level, frames: int, unknown: list[str], stamp_ns: int,
                bad: Sequence[str] = ()) -> ModelHealth:
        """The health of a model from its smoothed z-scores, its level held with hysteresis from ``previous``."""
        z_state = self._z.get(model_name, {})
        ranked = sorted(z_state.items(), key=lambda kv: -abs(kv[1]))
        zmax = abs(ranked[0][1]) if ranked else 0.0
        level = self._level_from(zmax, previous)
        self._level[model_name] = level
        worst = [(n, z) for n, z in ranked[: self.cfg.worst_layers] if abs(z) >= self.cfg.hysteresis * self.cfg.warn_z]
        likely = None
        if level == Level.OK:
            message = f"OK (max |z| {zmax:.1f})"
        else:
            named = ", ".join(f"{n} (z={z:+.1f})" for n, z in worst) or ", ".join(bad)
            message = f"{level.name}: entropy off reference in {named}"
            likely = nearest_signature(z_state, self.signatures.get(model_name, {}))
            if likely is not None and likely[1] >= self.cfg.min_similarity:
                message += f"; likely fault: {likely[0]} (similarity {likely[1]:.2f})"
            else:
                likely = None
        return ModelHealth(model_name, level, message, dict(z_state), worst, frames, unknown, stamp_ns, likely)

    def configure(self, cfg: MonitorConfig) -> None:
        """New settings; every model's level is judged again at once from its smoothed z-scores under the new
        thresholds (as if it had been OK before, so that raising a threshold can clear a level)."""
        self.cfg = cfg
        for name, h in self._health.items():
            if name in self._z:
                self._health[name] = self._assess(name, Level.OK, h.frames, h.unknown_layers, h.last_stamp_ns)

    def reset(self, model_name: str) -> None:
        """Forget a model's smoothed z-scores and level (its profiles' time restarted: a looped bag, a simulator
        reset); the next profile starts afresh. The frame count is kept."""
        self._z.pop(model_name, None)
        self._level.pop(model_name, None)

    def states(self, now_s: float | None = None) -> list[ModelHealth]:
        """Every model's latest health; models silent for ``stale_after_s`` are reported STALE."""
        out = []
        for name, health in self._health.items():
            if now_s is not None and now_s - self._last_seen_s.get(name, now_s) > self.cfg.stale_after_s:
                health = ModelHealth(name, Level.STALE, f"STALE: no entropy profile for "
                                     f"{now_s - self._last_seen_s[name]:.1f} s", health.z_scores, [],
                                     health.frames, health.unknown_layers, health.last_stamp_ns)
            out.append(health)
        return out
