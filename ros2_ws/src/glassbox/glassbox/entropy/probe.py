"""Per-layer entropy profiles: from a dict of feature maps, or live from forward hooks on named modules.

``profile_from_features`` turns named feature maps (torch tensors or numpy arrays, e.g. the extra outputs of
an ONNX Runtime session) into an :class:`EntropyProfile`. ``EntropyProbe`` hooks named modules of any
``nn.Module`` and builds the same profile on every ``every_n``-th forward (or the next one after
:meth:`EntropyProbe.request`); with ``enabled=False`` it registers no hook at all.

Each layer's entropy is estimated per example of the batch and **averaged over the batch** (``batch="mean"``,
the default; ``batch="pooled"`` instead merges the examples' samples into one set). A 2-D (B, F) feature is a
single set whose samples are the batch rows. ``delta[0] = 0``, ``delta[i] = H[i] - H[i-1]``, and the Eloss terms
of a profile are taken over ``delta[1:]`` (the N - 1 changes between N probed layers).

Hooks only take the (subsampled) sample sets; the estimates run once the last probed layer of a forward has
run, with sets of equal shape estimated in one batched call (fewer fixed per-call costs). Sets that alias a
layer's output are copied, so in-place operations after the layer (``ReLU(inplace=True)``) cannot change them.

The default :class:`ProbeConfig` is sized for per-frame use: the kNN estimator on channels as samples with at
most 128 samples of at most 256 coordinates per layer (fixed-seed subsampling), which costs well under a
millisecond per layer on one CPU core (see ``bench/bench_entropy.py`` for the measured overhead).

``compute_time_ms`` is host wall time spent in the probe (hooks plus assembly). On CUDA the probe waits for the
entropy values when it assembles the profile, so the time includes any GPU work still queued at that point.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor, nn

from .estimators import ESTIMATORS, EntropyError, knn_offset
from .sampling import SAMPLE_MODES, feature_samples


class ProbeError(RuntimeError):
    """An entropy probe cannot be attached or a profile cannot be built."""


class ProbeConfigError(ValueError):
    """A probe configuration value out of its range."""


@dataclass(frozen=True)
class ProbeConfig:
    """What an entropy probe estimates and how often.

    ``estimator``: "knn" | "gaussian" | "channel"; ``k``: neighbour rank for "knn"; ``sample_mode``: "channels"
    (n = C, d = H*W) or "positions" (n = H*W, d = C); ``max_samples`` / ``max_dim``: caps on n and d by
    subsampling with ``seed`` (``None``: no cap); ``every_n``: probe one forward in N; ``enabled``: attach hooks
    at all; ``batch``: "mean" (per-example estimate, averaged) or "pooled" (one set from all examples).
    """

    estimator: str = "knn"
    k: int = 1
    sample_mode: str = "channels"
    max_samples: int | None = 128
    max_dim: int | None = 256
    seed: int = 0
    every_n: int = 1
    enabled: bool = True
    batch: str = "mean"

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ProbeConfigError(f"estimator must be one of {sorted(ESTIMATORS)}, got {self.estimator!r}")
        if self.sample_mode not in SAMPLE_MODES:
            raise ProbeConfigError(f"sample_mode must be one of {SAMPLE_MODES}, got {self.sample_mode!r}")
        if self.k < 1:
            raise ProbeConfigError(f"k must be >= 1, got {self.k}")
        for name in ("max_samples", "max_dim"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ProbeConfigError(f"{name} must be >= 2 or None, got {value}")
        if self.every_n < 1:
            raise ProbeConfigError(f"every_n must be >= 1, got {self.every_n}")
        if self.batch not in ("mean", "pooled"):
            raise ProbeConfigError(f"batch must be 'mean' or 'pooled', got {self.batch!r}")

    def params(self) -> dict[str, str]:
        """Estimator parameters as strings (the message's key/value lists)."""
        out = {"sample_mode": self.sample_mode, "max_samples": str(self.max_samples),
               "max_dim": str(self.max_dim), "seed": str(self.seed), "batch": self.batch}
        if self.estimator == "knn":
            out = {"k": str(self.k), **out}
        return out


@dataclass
class EntropyProfile:
    """Per-layer entropy of one network on one input (or batch); mirrors glassbox_msgs/EntropyProfile."""

    model_name: str
    estimator: str
    estimator_params: dict[str, str]
    layer_names: list[str]
    entropy_nats: np.ndarray            # (L,) float64
    delta_nats: np.ndarray              # (L,) float64, delta[0] = 0
    samples_per_layer: np.ndarray       # (L,) uint32
    sample_dim_per_layer: np.ndarray    # (L,) uint32
    eloss_variance: float = 0.0
    eloss_direction: float = 0.0
    compute_time_ms: float = 0.0

    def to_dict(self) -> dict:
        """Plain types only (lists, floats, str): for JSON/YAML model cards."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> EntropyProfile:
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProbeError(f"EntropyProfile: unknown key '{unknown[0]}'")
        kwargs = dict(data)
        for name in ("entropy_nats", "delta_nats"):
            kwargs[name] = np.asarray(kwargs[name], dtype=np.float64)
        for name in ("samples_per_layer", "sample_dim_per_layer"):
            kwargs[name] = np.asarray(kwargs[name], dtype=np.uint32)
        kwargs["layer_names"] = list(kwargs["layer_names"])
        kwargs["estimator_params"] = {str(k): str(v) for k, v in dict(kwargs["estimator_params"]).items()}
        return cls(**kwargs)


def layer_samples(fmap: Tensor, cfg: ProbeConfig) -> Tensor:
    """The sample sets a probe estimates for one feature map: (B, n, d), or (1, B*n, d) when pooled."""
    x = feature_samples(fmap, cfg.sample_mode, cfg.max_samples, cfg.max_dim, cfg.seed)     # (B, n, d)
    if cfg.batch == "pooled" and x.shape[0] > 1:
        x = x.reshape(1, -1, x.shape[2])
    return x


def estimate_layers(samples: Sequence[Tensor], cfg: ProbeConfig) -> list[Tensor]:
    """Batch-averaged entropy (0-dim tensor, keeping grad) of each sample set.

    Sets of equal (n, d, dtype, device) are concatenated and estimated in one call, which saves the fixed
    per-call cost when several probed layers have the same shape; the values are those of separate calls.
    """
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(samples):
        groups.setdefault((x.shape[1], x.shape[2], x.dtype, x.device), []).append(i)
    fn = ESTIMATORS[cfg.estimator]
    kwargs = {"k": cfg.k} if cfg.estimator == "knn" else {}
    out: list[Tensor | None] = [None] * len(samples)
    for (n, d, _, _), members in groups.items():
        batch = torch.cat([samples[i] for i in members]) if len(members) > 1 else samples[members[0]]
        try:
            h = fn(batch, **kwargs)                                                         # (sum B,)
        except EntropyError as exc:
            raise ProbeError(f"sample sets of n={n}, d={d}: {exc}") from exc
        sizes = [samples[i].shape[0] for i in members]
        if min(sizes) == max(sizes):                       # the usual case: one batch, one mean kernel
            means = h.reshape(len(members), sizes[0]).mean(1).unbind(0)
        else:
            means = [part.mean() for part in h.split(sizes)]
        for i, mean in zip(members, means):
            out[i] = mean
    return out


def layer_entropy(fmap: Tensor, cfg: ProbeConfig) -> tuple[Tensor, int, int]:
    """Batch-averaged entropy (nats, 0-dim tensor keeping grad) of one feature map, with its sample n and d."""
    x = layer_samples(fmap, cfg)
    return estimate_layers([x], cfg)[0], x.shape[1], x.shape[2]


def _as_numpy(entropies: Sequence[Tensor]) -> np.ndarray:
    return torch.stack([e.detach() for e in entropies]).to(torch.float64).cpu().numpy() if entropies else \
        np.zeros(0, dtype=np.float64)


def _assemble(h: np.ndarray, names: Sequence[str], ns: Sequence[int], ds: Sequence[int],
              cfg: ProbeConfig, model_name: str, elapsed_s: float, start: float) -> EntropyProfile:
    delta = np.zeros_like(h)
    delta[1:] = np.diff(h)
    tail = delta[1:]
    return EntropyProfile(
        model_name=model_name, estimator=cfg.estimator, estimator_params=cfg.params(),
        layer_names=list(names), entropy_nats=h, delta_nats=delta,
        samples_per_layer=np.asarray(ns, dtype=np.uint32), sample_dim_per_layer=np.asarray(ds, dtype=np.uint32),
        eloss_variance=float(np.var(tail)) if tail.size > 1 else 0.0,       # same as eloss_variance
        eloss_direction=float(-np.sum(tail * tail)),                         # same as eloss_direction
        compute_time_ms=1e3 * (elapsed_s + time.perf_counter() - start))


def profile_from_features(features: Mapping[str, Tensor | np.ndarray], cfg: ProbeConfig,
                          model_name: str = "") -> EntropyProfile:
    """Entropy profile of named feature maps (in the mapping's order), torch tensors or numpy arrays.

    Runs without gradient; numpy inputs are wrapped without a copy where possible. The profile's arrays are
    numpy (float64 entropies and deltas, uint32 sample counts and dimensions).
    """
    start = time.perf_counter()
    names, sets = [], []
    with torch.no_grad():
        for name, fmap in features.items():
            if isinstance(fmap, np.ndarray):
                arr = fmap if fmap.flags.writeable else fmap.copy()
                fmap = torch.from_numpy(np.ascontiguousarray(arr))
            elif not isinstance(fmap, Tensor):
                raise ProbeError(f"feature '{name}': expected a torch.Tensor or numpy array, "
                                 f"got {type(fmap).__name__}")
            names.append(name)
            sets.append(_checked_samples(name, fmap, cfg))
        hs = estimate_layers(sets, cfg)
    return _assemble(_as_numpy(hs), names, [x.shape[1] for x in sets], [x.shape[2] for x in sets], cfg, model_name,
                     0.0, start)


def profile_from_knn(names: Sequence[str], mean_log_r: np.ndarray, sizes: np.ndarray, cfg: ProbeConfig,
                     model_name: str = "", params: Mapping[str, str] | None = None) -> EntropyProfile:
    """Entropy profile from kNN statistics computed elsewhere (an exported graph's entropy head): per example
    and layer the mean log k-th neighbour distance ``mean_log_r`` (B, L), and each layer's sample count and
    dimension ``sizes`` (L, 2); ``H = knn_offset(n, d, k) + d * mean_log_r``, averaged over the batch.
    ``params``: the profile's ``estimator_params`` (default ``cfg.params()``)."""
    start = time.perf_counter()
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    offset = np.array([knn_offset(int(n), int(d), cfg.k) for n, d in sizes])
    h = offset + sizes[:, 1] * np.asarray(mean_log_r, dtype=np.float64).reshape(-1, len(sizes)).mean(0)
    profile = _assemble(h, names, sizes[:, 0], sizes[:, 1], cfg, model_name, 0.0, start)
    if params is not None:
        profile.estimator_params = dict(params)
    return profile


def _checked_samples(name: str, fmap: Tensor, cfg: ProbeConfig) -> Tensor:
    try:
        return layer_samples(fmap, cfg)
    except EntropyError as exc:
        raise ProbeError(f"layer '{name}' (shape {tuple(fmap.shape)}): {exc}") from exc


class EntropyProbe:
    """Forward hooks on named modules of ``model`` that build an :class:`EntropyProfile` per probed forward.

    ``layers`` are module names as in ``model.named_modules()``, in forward order. After a probed forward,
    ``.profile`` is the latest profile (numpy) and ``.entropies`` the per-layer 0-dim tensors (keeping grad when
    the forward ran with grad, for Eloss); ``.sample_dims`` gives each layer's d. A forward counts as complete
    when every listed layer has run once. Use as a context manager or call :meth:`remove`.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], cfg: ProbeConfig, model_name: str = "") -> None:
        self.cfg = cfg
        self.model_name = model_name
        self.layers = list(layers)
        if not self.layers:
            raise ProbeError("EntropyProbe: no layers to probe")
        if len(set(self.layers)) != len(self.layers):
            raise ProbeError(f"EntropyProbe: duplicate layer names in {self.layers}")
        modules = dict(model.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise ProbeError(f"EntropyProbe: model has no module '{missing[0]}' "
                             f"(some known: {', '.join(list(modules)[1:12])})")
        self.profile: EntropyProfile | None = None
        self.entropies: dict[str, Tensor] = {}
        self.sample_dims: dict[str, int] = {}
        self.forward_count = 0
        self._handles: list = []
        self._seen: set[str] = set()
        self._pending: dict[str, Tensor] = {}
        self._active = False
        self._requested = False
        self._elapsed_s = 0.0
        if cfg.enabled:
            for name in self.layers:
                self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))

    @property
    def attached(self) -> bool:
        """Whether hooks are registered (False when disabled or removed)."""
        return bool(self._handles)

    def request(self) -> None:
        """Probe the next forward regardless of ``every_n``."""
        self._requested = True

    def _start_forward(self) -> None:
        self._seen.clear()
        self._pending.clear()
        self._elapsed_s = 0.0
        self._active = self._requested or self.forward_count % self.cfg.every_n == 0
        self._requested = False
        self.forward_count += 1

    def _make_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output) -> None:
            if name in self._seen or not self._seen:
                self._start_forward()
            self._seen.add(name)
            if self._active:
                start = time.perf_counter()
                fmap = output[0] if isinstance(output, (tuple, list)) else output
                if not isinstance(fmap, Tensor):
                    raise ProbeError(f"layer '{name}' returned {type(fmap).__name__}, not a tensor")
                x = _checked_samples(name, fmap, self.cfg)
                if x.untyped_storage().data_ptr() == fmap.untyped_storage().data_ptr():
                    x = x.clone()                      # later in-place ops on the output must not reach it
                self._pending[name] = x
                self._elapsed_s += time.perf_counter() - start
                if len(self._pending) == len(self.layers):
                    self._finish()
        return hook

    def _finish(self) -> None:
        start = time.perf_counter()
        sets = [self._pending[n] for n in self.layers]
        hs = estimate_layers(sets, self.cfg)
        ns = [x.shape[1] for x in sets]
        ds = [x.shape[2] for x in sets]
        self.entropies = dict(zip(self.layers, hs))
        self.sample_dims = dict(zip(self.layers, ds))
        self.profile = _assemble(_as_numpy(hs), self.layers, ns, ds, self.cfg, self.model_name, self._elapsed_s, start)
        self._pending.clear()

    def remove(self) -> None:
        """Unregister every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> EntropyProbe:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
