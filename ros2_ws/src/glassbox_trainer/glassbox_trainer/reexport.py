"""Re-export shipped cards with the entropy computed in the graph, and optionally recompute their reference.

    python -m glassbox_trainer.reexport models/<name>.card.yaml [...] [--reference]

The re-export itself is ``glassbox.export.reexport`` (core). ``--reference`` also recomputes the card's
reference entropy profile with the deployed (in-graph) estimator, the way the trainer records it (one profile
per input, mean and std per layer), on the trainer task's reference inputs (``reference_set()``, else the first
validation items), rebuilt from the card's recorded training config: for cards whose layers spread over inputs
less than the systematic offset of the stratified sampling (the refiner's, the LiDAR detector's).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from glassbox.export.reexport import card_probe, pipeline_classes, reexport
from glassbox.models.card import EntropyReference, ModelCard, load_card, save_card
from glassbox_trainer.task import build_task


def _training_task(card: ModelCard):
    """The trainer task that made ``card``, from its recorded config (``task: name`` with a ``name:`` section,
    or a ``task:`` section whose name is the capability's trainer task)."""
    from glassbox import capabilities
    config = card.training.get("config", {})
    if isinstance(config.get("task"), str):
        return build_task(config["task"], config.get("task_cfg") or config.get(config["task"], {}))
    pipeline = pipeline_classes()[card.task]
    name = next(c.train_task for c in capabilities.all_capabilities() if c.load_pipeline() is pipeline)
    return build_task(name, config.get("task", {}))


def _reference_items(task, card: ModelCard) -> list:
    """The inputs the trainer recorded the reference on: the task's ``reference_set()``, else the first
    validation items (as many as the card's reference used)."""
    if hasattr(task, "reference_set"):
        return list(task.reference_set())
    _, val = task.datasets()
    count = card.entropy_reference.num_inputs if card.entropy_reference else 8
    return [val[i] for i in range(min(count, len(val)))]


def recompute_reference(card_path: str | Path) -> ModelCard:
    """The card with its reference entropy profile recomputed by its (re-exported) graph on the reference inputs
    of the trainer task that made it (``_reference_items``)."""
    from glassbox.entropy.probe import profile_from_knn

    card_path = Path(card_path)
    card = load_card(card_path)
    task = _training_task(card)
    probe = card_probe(card)
    pipe = pipeline_classes()[card.task].from_card(card_path, threads=1, probe=probe)
    rows, graph = [], None
    for item in _reference_items(task, card):
        inputs = task.example_inputs(task.collate([item]))
        graph = pipe.runtime.run({n: t.numpy() for n, t in zip(card.inputs, inputs)}).entropy
        rows.append(profile_from_knn(graph.layers, graph.mean_log_r, graph.sizes, probe).entropy_nats)
    h = np.stack(rows)
    ref = EntropyReference(estimator=probe.estimator, estimator_params=dict(graph.params), layer_names=graph.layers,
                           mean_nats=tuple(h.mean(0).tolist()), std_nats=tuple(h.std(0).tolist()),
                           num_inputs=len(rows))
    card = replace(card, entropy_reference=ref)
    save_card(card, card_path)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="+", help="model card YAML files")
    parser.add_argument("--reference", action="store_true", help="recompute the reference entropy profile")
    args = parser.parse_args(argv)
    for path in args.cards:
        card = reexport(path)
        if args.reference:
            card = recompute_reference(path)
            print(f"{path}: reference profile recomputed on {card.entropy_reference.num_inputs} inputs")
        print(f"{path}: {card.file} sha256 {card.sha256[:12]}..., entropy of {len(card.features)} layers in the graph")


if __name__ == "__main__":
    main()
