"""Export of a trained model: ONNX with feature-map outputs, ONNX Runtime parity, model card.

``export_with_features`` writes an ONNX graph whose outputs are the model's forward outputs followed by its
feature maps (named as in ``forward_features``), so that the ONNX Runtime backend of a pipeline can build the
same entropy profiles as the torch backend. ``check_parity`` runs the file with ONNX Runtime and compares
every output with eager PyTorch. ``export_model`` does the whole job for a task: ONNX (through
``Task.export``), parity on reference inputs, the reference entropy profile (per-layer mean and standard
deviation over reference inputs, one profile per input) and the model card with the file's sha256: the one
card writer of every trained model (the task adds its fields through the optional ``card_extra``, ``report``
and ``card_task`` of ``glassbox_trainer.task``).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

import glassbox
from glassbox.export import FeatureGraph, export_with_features  # noqa: F401 (the tasks import it from here)
from glassbox.models.card import EntropyReference, ModelCard, save_card, sha256_file
from glassbox.runtime import OrtBackend

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """Export failed or the exported graph disagrees with the eager model."""


def check_parity(model: nn.Module, onnx_path: str | Path, inputs: Mapping[str, np.ndarray], atol: float = 1e-3,
                 feature_names: Sequence[str] | None = None) -> dict[str, float]:
    """Max |ORT - torch| per output on ``inputs``; raises :class:`ExportError` above ``atol``."""
    session = OrtBackend(onnx_path)
    got = session.run(inputs).outputs
    model = model.eval().cpu()
    with torch.no_grad():
        tin = [torch.from_numpy(np.asarray(inputs[n])) for n in session.input_names]
        names = list(feature_names) if feature_names is not None else None
        feats = model.forward_features(*tin)
        wrapper = FeatureGraph(model, names if names is not None else
                               [n for n in session.output_names if n in feats])
        ref = [t.numpy() for t in wrapper(*tin)]
    if len(ref) != len(session.output_names):
        raise ExportError(f"{onnx_path}: {len(session.output_names)} ONNX outputs but the model gives {len(ref)}")
    diffs = {}
    for name, r in zip(session.output_names, ref):
        g = got[name]
        if g.shape != r.shape:
            raise ExportError(f"{onnx_path}: output '{name}' has shape {g.shape} in ONNX, {r.shape} in torch")
        diffs[name] = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
    worst = max(diffs, key=diffs.get)
    if diffs[worst] > atol:
        raise ExportError(f"{onnx_path}: ONNX Runtime and torch differ by {diffs[worst]:.3g} on '{worst}' "
                          f"(tolerance {atol:g})")
    return diffs


def reference_entropy(task, model: nn.Module, loader: DataLoader, probe_cfg, max_batches: int,
                      layers: Sequence[str] | None = None) -> EntropyReference:
    """Per-layer entropy mean and std over the inputs of ``loader`` (one profile per input, as a pipeline
    computes it per frame) of ``layers`` (default: every map-like feature)."""
    from glassbox.entropy import profile_from_features
    from glassbox_trainer.curves import entropy_features

    per_input: list[np.ndarray] = []
    names: list[str] = []
    model = model.eval()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            feats = entropy_features(model.forward_features(*task.example_inputs(batch)))
            if layers is not None:
                missing = [n for n in layers if n not in feats]
                if missing:
                    raise ExportError(f"exported feature '{missing[0]}' is not among the task's features")
                feats = {n: feats[n] for n in layers}
            b = next(iter(feats.values())).shape[0]
            for j in range(b):
                prof = profile_from_features({k: v[j:j + 1] for k, v in feats.items()}, probe_cfg)
                names = prof.layer_names
                per_input.append(prof.entropy_nats)
    if not per_input:
        raise ExportError("no reference inputs for the entropy profile")
    h = np.stack(per_input)                                                    # (N, L)
    return EntropyReference(estimator=probe_cfg.estimator, estimator_params=probe_cfg.params(),
                            layer_names=tuple(names), mean_nats=tuple(float(x) for x in h.mean(0)),
                            std_nats=tuple(float(x) for x in h.std(0)), num_inputs=int(h.shape[0]))


def parity_inputs(task, spec: Mapping[str, Any], batch: dict) -> dict[str, np.ndarray]:
    """The model's inputs in ``batch`` (``task.example_inputs``) by ONNX input name, cut to the spec's batch
    size."""
    inputs = task.example_inputs(batch)
    if len(inputs) != len(spec["inputs"]):
        raise ExportError(f"task '{task.name}': example_inputs() gives {len(inputs)} inputs, the ONNX graph has "
                          f"{len(spec['inputs'])} ({', '.join(spec['inputs'])})")
    return {name: x[:int(s["shape"][0])].detach().cpu().float().numpy()
            for (name, s), x in zip(spec["inputs"].items(), inputs)}


def card_extra(task, model: nn.Module, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``extra``: the task's ``card_extra(model)``, the export spec's own keys (e.g. normalisation
    constants) and the task's ``report(model)`` tables under ``report``."""
    extra = dict(task.card_extra(model)) if hasattr(task, "card_extra") else {}
    extra.update({k: v for k, v in spec.items() if k not in ("inputs", "outputs", "features", "classes")})
    if hasattr(task, "report"):
        with torch.no_grad():
            extra["report"] = json.loads(json.dumps(task.report(model.eval()), default=float))
    return extra


def export_model(task, model: nn.Module, out_dir: str | Path, name: str, metrics: Mapping[str, float],
                 loader: DataLoader, probe_cfg, training: Mapping[str, Any], atol: float = 1e-3,
                 entropy_batches: int = 4, weights: Mapping[str, Tensor] | None = None) -> Path:
    """ONNX + optional ``.pt`` state dict + card for ``model`` under ``out_dir``; returns the card path.

    ``loader`` yields the reference inputs (the validation set, or the task's ``reference_set()``): its first
    batch checks parity, its first ``entropy_batches`` batches give the reference entropy profile.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    model = model.eval().cpu()
    spec = dict(task.export(model, str(onnx_path)))
    for key in ("inputs", "outputs", "features"):
        if key not in spec:
            raise ExportError(f"task '{task.name}': export() must return a spec with '{key}' (got {sorted(spec)})")
    diffs = check_parity(model, onnx_path, parity_inputs(task, spec, next(iter(loader))), atol, spec["features"])
    weights_file, weights_sha = "", ""
    if weights is not None:
        from glassbox_trainer.checkpoint import save_atomic
        wpath = out_dir / f"{name}.pt"
        save_atomic(dict(weights), wpath)
        weights_file, weights_sha = wpath.name, sha256_file(wpath)
    ref = reference_entropy(task, model, loader, probe_cfg, entropy_batches, spec["features"])
    classes = spec.get("classes", getattr(task, "classes", ()))
    card = ModelCard(name=name, task=getattr(task, "card_task", task.name), file=onnx_path.name,
                     sha256=sha256_file(onnx_path), inputs=dict(spec["inputs"]), outputs=tuple(spec["outputs"]),
                     features=tuple(spec["features"]), classes=tuple(str(c) for c in classes),
                     metrics={k: float(v) for k, v in metrics.items()}, training=dict(training),
                     entropy_reference=ref, weights_file=weights_file, weights_sha256=weights_sha,
                     parity_max_abs_diff=max(diffs.values()), extra=card_extra(task, model, spec),
                     created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     glassbox_version=glassbox.__version__)
    return save_card(card, out_dir / f"{name}.card.yaml")
