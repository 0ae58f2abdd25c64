"""What every pipeline shares: its config's runtime part, the backend, the entropy profile, and ``from_card``.

A pipeline config is a ``glassbox.runtime.RuntimeConfig`` (backend, providers, device, threads, warm-up,
provider options) plus the model file, the name its entropy profiles carry and the probe. ``from_card`` builds
any pipeline from a model card the same way: the card's ``extra`` entries that name config fields
(``model_config`` fills ``model``), the input size of its first input, its classes and its feature maps (the
probed layers, whose reference profile the card holds), with the model file checked against the card's sha256.

The entropy profile comes from the graph itself when it computes it (a graph exported with a probe, the shipped
ones: ``GraphEntropy``), else from the returned feature maps; ``entropy_in_graph`` (set by such a card) makes
the torch backend compute it the same way, so both backends give the same profile. Frames that are not probed
run without the entropy part at all.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

from glassbox.config import from_dict
from glassbox.entropy import EntropyProfile, ProbeConfig, profile_from_features
from glassbox.entropy.probe import profile_from_knn
from glassbox.export import EntropyHead, check_graph_probe, graph_probe_params
from glassbox.models.card import ModelCard, load_card, verify_model_file, verify_weights_file
from glassbox.runtime import Backend, BackendError, Inference, RuntimeConfig, open_backend


@dataclass(frozen=True)
class PipelineConfig(RuntimeConfig):
    """``model_path``: ``.pt`` (torch) or ``.onnx`` (onnxruntime); ``model_name``: the name of the entropy
    profiles (the card's, whose reference profile the monitor holds); ``probe_layers``: the feature maps of the
    profile (empty = every 4-D feature map the backend gives); ``entropy_in_graph``: the torch backend estimates
    the entropy as an exported graph with a probe does (``glassbox.export.EntropyHead``)."""

    model_path: str = ""
    model_name: str = ""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    probe_layers: tuple[str, ...] = ()
    entropy_in_graph: bool = False


def card_model_file(card: ModelCard, card_path: Path, backend: str) -> Path:
    """The verified model file for ``backend``: the card's ONNX graph, or its ``.pt`` weights for torch."""
    if backend == "onnxruntime":
        return verify_model_file(card, card_path.parent / card.file)
    if not card.weights_file:
        raise BackendError(f"{card_path}: the card names no .pt weights file for the torch backend")
    return verify_weights_file(card, card_path.parent / card.weights_file)


def card_settings(card: ModelCard, known: set[str]) -> dict[str, Any]:
    """Config entries (plain data) of ``card`` for a config with the fields ``known``."""
    data: dict[str, Any] = {}
    for key, value in card.extra.items():
        name = "model" if key == "model_config" else key
        if name in known:                     # a nested list (a 3x3 homography) is stored row-major
            data[name] = np.ravel(value).tolist() if isinstance(value, list) and value and \
                isinstance(value[0], list) else value
    shapes = [s["shape"] for s in card.inputs.values() if len(s.get("shape", ())) == 4]
    size_key = next((k for k in ("input_size", "warmup_size") if k in known), None)
    if shapes and size_key and size_key not in data:
        data[size_key] = [int(shapes[0][3]), int(shapes[0][2])]          # (width, height)
    if card.classes and "class_names" in known:
        data["class_names"] = list(card.classes)
    if card.features:
        data["probe_layers"] = list(card.features)
    return data


class ModelPipeline:
    """Base of the pipelines. A subclass names its ``config_cls``, the card ``extra`` entries it requires and
    its ``error`` class, and calls :meth:`_open` to build its backend."""

    config_cls: ClassVar[type[PipelineConfig]]
    required_extra: ClassVar[tuple[str, ...]] = ()
    error: ClassVar[type[Exception]] = BackendError
    runtime: Backend

    @classmethod
    def from_card(cls, card_path: str | Path, *, backend: str = "onnxruntime", providers: Sequence[str] = ("cpu",),
                  device: str = "cpu", threads: int = 0, probe: ProbeConfig | None = None, model_name: str = "",
                  **overrides: Any):
        """The pipeline of a model card. ``overrides``: config fields (e.g. ``score_threshold``,
        ``provider_options``) or constructor arguments (e.g. ``refiner``)."""
        card_path = Path(card_path)
        card = load_card(card_path)
        missing = [k for k in cls.required_extra if k not in card.extra]
        if missing:
            raise cls.error(f"{card_path}: card has no '{missing[0]}' in its extra section")
        known = {f.name for f in fields(cls.config_cls)}
        args = set(inspect.signature(cls.__init__).parameters) - {"self", "cfg"}
        bad = [k for k in overrides if k not in known and k not in args]
        if bad:
            raise cls.error(f"{cls.config_cls.__name__} has no setting '{bad[0]}'")
        try:
            path = card_model_file(card, card_path, backend)
        except BackendError as exc:
            raise cls.error(str(exc)) from None
        cfg = from_dict(cls.config_cls, card_settings(card, known), source=f"{card_path}:extra")
        cfg = replace(cfg, backend=backend, providers=tuple(providers), device=device, threads=threads,
                      model_path=str(path), model_name=model_name or card.name, probe=probe or cfg.probe,
                      **{k: v for k, v in overrides.items() if k in known})
        return cls(cfg, **{k: v for k, v in overrides.items() if k not in known})

    def _open(self, cfg: PipelineConfig, build_model: Callable[[dict], nn.Module], input_names: Sequence[str],
              output_names: Sequence[str], example: Mapping[str, np.ndarray]) -> Backend:
        """The backend of ``cfg``, warmed up on ``example`` inputs (errors re-raised as ``self.error``)."""
        head = None
        if cfg.entropy_in_graph and cfg.probe.enabled and cfg.backend == "torch":
            try:
                check_graph_probe(cfg.probe)
            except ValueError as exc:
                raise self.error(str(exc)) from None
            head = EntropyHead(cfg.probe_layers or None, cfg.probe)
        try:
            backend = open_backend(cfg, cfg.model_path, build_model, input_names, output_names, head)
        except BackendError as exc:
            raise self.error(str(exc)) from None
        self._check_graph_probe(cfg, backend)
        self.example = dict(example)
        self._warmup(backend, cfg, cfg.warmup_runs)
        return backend

    def warmup(self, runs: int = 1) -> None:
        """``runs`` network runs on the example inputs (zeros of the model's input shape) as frames will run:
        with the entropy part and, when some frames go without it, without. A node built with ``warmup_runs=0``
        does this when it is activated."""
        self._warmup(self.runtime, self.cfg, runs)

    def _warmup(self, backend: Backend, cfg: PipelineConfig, runs: int) -> None:
        for _ in range(runs):
            backend.run(self.example, entropy=self.probing(0, cfg))
            if cfg.probe.every_n > 1 or not cfg.probe.enabled:
                backend.run(self.example, entropy=False)

    def _check_graph_probe(self, cfg: PipelineConfig, backend: Backend) -> None:
        spec = backend.entropy_spec
        if spec is None or not cfg.probe.enabled:
            return
        layers = list(cfg.probe_layers or spec["layers"] or ())
        wanted = {"estimator": cfg.probe.estimator, "params": graph_probe_params(cfg.probe)}
        if spec["estimator"] != wanted["estimator"] or spec["params"] != wanted["params"] or \
                (spec["layers"] is not None and list(spec["layers"]) != layers):
            raise self.error(f"{cfg.model_path}: the graph estimates entropy of {spec['layers']} with "
                             f"{spec['estimator']} {spec['params']}, the pipeline asks for {layers} with "
                             f"{wanted['estimator']} {wanted['params']} (re-export, or use the card's probe)")

    @property
    def session(self) -> Backend | None:
        """The ONNX Runtime backend (None under torch); ``runtime`` is the backend of either kind."""
        return None if self.runtime.providers[0].startswith("torch:") else self.runtime

    def set_probe(self, **changes: Any) -> None:
        """Change the probe while the pipeline runs (``enabled``, ``every_n``; from the next frame on). Enabling a
        probe that was disabled when the pipeline was built gives the feature-map estimate, not the in-graph one of
        the torch backend: build with it enabled, then disable it, to be able to switch it on and off."""
        self.cfg = replace(self.cfg, probe=replace(self.cfg.probe, **changes))

    def probing(self, frame: int, cfg: PipelineConfig | None = None) -> bool:
        """Whether ``frame`` gets an entropy profile."""
        probe = (cfg or self.cfg).probe
        return probe.enabled and frame % probe.every_n == 0

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Inference:
        """One network run on this frame's inputs, with the entropy part only on probed frames."""
        return self.runtime.run(inputs, entropy=self.probing(self._frame))

    def entropy(self, inference: Inference, frame: int = 0) -> EntropyProfile | None:
        """The entropy profile of the probed layers, or None when ``frame`` is not probed."""
        cfg: PipelineConfig = self.cfg
        if not self.probing(frame):
            return None
        if inference.entropy is not None:
            g = inference.entropy
            return profile_from_knn(g.layers, g.mean_log_r, g.sizes, cfg.probe, cfg.model_name, g.params)
        features = inference.features
        names = list(cfg.probe_layers) or [n for n, f in features.items() if f.ndim == 4]
        missing = [n for n in names if n not in features]
        if missing:
            raise self.error(f"probe layer '{missing[0]}' is not a feature map (have: {', '.join(features)})")
        return profile_from_features({n: features[n] for n in names}, cfg.probe, model_name=cfg.model_name)


def milliseconds(stamps: Sequence[float], names: Sequence[str]) -> dict[str, float]:
    """Stage timings in ms from ``len(names) + 1`` perf-counter stamps, plus ``total``."""
    out = {n: 1e3 * (b - a) for n, a, b in zip(names, stamps, stamps[1:])}
    out["total"] = 1e3 * (stamps[-1] - stamps[0])
    return out
