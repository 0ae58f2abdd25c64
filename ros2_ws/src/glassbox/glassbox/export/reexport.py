"""Re-export a shipped model card's ONNX graph from its ``.pt`` weights, with the entropy computed in the graph.

    python -m glassbox.export.reexport models/<name>.card.yaml [...]

For each card: the network is built from the card's recorded architecture config and loaded from its verified
``.pt`` weights (the torch backend of the card's pipeline), exported with ``export_with_features(...,
probe=...)`` under the probe settings of the card's reference entropy profile, over the card's feature maps,
with the card's input shapes (dynamic height and width where the card says so). The graph replaces the card's
``file``; the card gets the new sha256, the torch / ONNX Runtime parity of the head outputs on seeded noise,
and ``extra.entropy_in_graph: true`` (read by ``from_card``: the torch backend then estimates as the graph
does). Metrics and the reference entropy profile are kept: the network is the same, and the in-graph estimate
agrees with the reference estimator within its sampling spread (``tests/core/test_entropy_graph.py``).
Re-running it on a re-exported card exports the same graph again.

To also recompute the card's reference entropy profile with the in-graph estimator on the trainer task's
reference inputs, use ``python -m glassbox_trainer.reexport --reference`` (the trainer owns those inputs).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from glassbox.entropy import ProbeConfig
from glassbox.export.onnx import export_with_features
from glassbox.models.card import ModelCard, load_card, save_card, sha256_file


def pipeline_classes() -> dict[str, type]:
    from glassbox.pipelines import FusionPipeline, LidarDetectionPipeline, RefinerPipeline, SegmentationPipeline
    return {"lidar": LidarDetectionPipeline, "image_refinement": RefinerPipeline,
            "semantic_segmentation": SegmentationPipeline, "rgbt_detection": FusionPipeline}


def card_probe(card: ModelCard) -> ProbeConfig:
    """The probe of the card's reference entropy profile (the default probe without one)."""
    from glassbox.stages.base import probe_config_for_card
    return probe_config_for_card(card)


def head_parity(pipe, onnx_path: Path, inputs: dict[str, np.ndarray]) -> float:
    """Max |ONNX Runtime - torch| over the head outputs on ``inputs``."""
    from glassbox.runtime import OrtBackend
    ort = OrtBackend(onnx_path, output_names=pipe.runtime.output_names).run(inputs, entropy=False).outputs
    eager = pipe.runtime.run(inputs, entropy=False).outputs
    return max(float(np.abs(ort[n].astype(np.float64) - eager[n]).max()) for n in eager)


def reexport(card_path: str | Path) -> ModelCard:
    """Re-export the graph of the card at ``card_path`` and rewrite the card (see the module docstring)."""
    card_path = Path(card_path)
    card = load_card(card_path)
    cls = pipeline_classes()[card.task]
    pipe = cls.from_card(card_path, backend="torch", threads=1, probe=ProbeConfig(enabled=False))
    example = {n: torch.zeros(s["shape"]) for n, s in card.inputs.items()}
    dynamic = all("dynamic" in s for s in card.inputs.values() if len(s["shape"]) == 4)
    out = card_path.parent / card.file
    export_with_features(pipe.runtime.model, example, out, list(card.outputs), list(card.features),
                         dynamic_spatial=dynamic, probe=card_probe(card))
    rng = np.random.default_rng(0)
    noise = {n: rng.random(s["shape"], dtype=np.float32) for n, s in card.inputs.items()}
    extra = {**card.extra, "entropy_in_graph": True}
    card = replace(card, sha256=sha256_file(out), parity_max_abs_diff=head_parity(pipe, out, noise), extra=extra)
    save_card(card, card_path)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="+", help="model card YAML files")
    args = parser.parse_args(argv)
    for path in args.cards:
        card = reexport(path)
        print(f"{path}: {card.file} sha256 {card.sha256[:12]}..., parity {card.parity_max_abs_diff:.2e}, "
              f"entropy of {len(card.features)} layers in the graph")


if __name__ == "__main__":
    main()
