"""Re-export shipped cards with the entropy computed in the graph, and optionally recompute their reference.

    python -m glassbox_trainer.reexport models/<name>.card.yaml [...] [--reference]
    python -m glassbox_trainer.reexport models/<name>.card.yaml --rescore config/train/<recipe>.yaml

The re-export itself is ``glassbox.export.reexport`` (core). ``--reference`` also recomputes the card's
reference entropy profile with the deployed (in-graph) estimator, the way the trainer records it (one profile
per input, mean and std per layer), on the trainer task's reference inputs (``reference_set()``, else the first
validation items), rebuilt from the card's recorded training config: for cards whose layers spread over inputs
less than the systematic offset of the stratified sampling (the refiner's, the LiDAR detector's).

``--rebuild CONFIG [--out DIR]`` exports the card's weights again through today's model code, for a change of
the graph that leaves the weights as they are (e.g. what a head returns): a new graph, deployed as the trainer
deploys it, the metrics and the calibration measured anew under the training config that made the card, which
``training.rebuilt`` records. It writes into ``--out`` (default: beside the card), so the shipped card can be
compared with the rebuilt one before it is replaced.

``--rescore CONFIG`` evaluates the card's weights again under a training config that builds the same network but
changes what lies around it (the decoder settings, a larger validation set): the card's metrics, the settings its
export records in ``extra`` (e.g. ``decode``) and ``training.config`` are replaced, and ``training.rescored``
records the command; the graph and the weights are kept as they are.
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


def rescore(card_path: str | Path, config_path: str | Path, section: str | None = None,
            command: str = "") -> ModelCard:
    """The card with the metrics of its weights evaluated under the training config ``config_path`` (see the
    module docstring). Raises ``ValueError`` when the config builds a network with other inputs, outputs or
    probed layers than the card's."""
    import tempfile

    import torch

    from glassbox.config import to_dict
    from glassbox.runtime import load_state
    from glassbox_trainer.config import load_train_config
    from glassbox_trainer.data import eval_loader
    from glassbox_trainer.export import card_extra

    card_path = Path(card_path)
    card = load_card(card_path)
    if not card.weights_file:
        raise ValueError(f"{card_path}: the card ships no weights file to evaluate")
    cfg = load_train_config(config_path, section)
    task = build_task(cfg.task, cfg.task_cfg)
    if getattr(task.cfg, "init_weights", ""):       # the card's weights replace what the recipe starts from
        task.cfg = replace(task.cfg, init_weights="")
    model = task.build_model(cfg.model_size)
    model.load_state_dict(load_state(card_path.parent / card.weights_file)[1])
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        spec = dict(task.export(model, str(Path(tmp) / "rescore.onnx")))
    if tuple(spec["outputs"]) != tuple(card.outputs) or tuple(spec["features"]) != tuple(card.features) or \
            sorted(spec["inputs"]) != sorted(card.inputs):
        raise ValueError(f"{config_path} builds another network than {card_path} (inputs, outputs or probed "
                         "layers differ): retrain instead of rescoring")
    with torch.no_grad():
        metrics = {k: float(v) for k, v in task.evaluate(model, eval_loader(task, task.datasets()[1], cfg)).items()}
    training = dict(card.training, config=to_dict(cfg),
                    rescored={"command": command or f"python -m glassbox_trainer.reexport {card_path} "
                                                    f"--rescore {config_path}", "config": str(config_path)})
    card = replace(card, metrics=metrics, extra={**card.extra, **card_extra(task, model, spec)}, training=training)
    save_card(card, card_path)
    return card


def rebuild(card_path: str | Path, config_path: str | Path, section: str | None = None,
            out_dir: str | Path | None = None, command: str = "") -> Path:
    """The card's weights exported again under the training config ``config_path`` (see the module docstring);
    returns the new card's path. Raises ``ValueError`` when the weights do not fit the config's network."""
    import torch

    from glassbox.runtime import load_state
    from glassbox_trainer.cli import deploy_graph
    from glassbox_trainer.config import load_train_config
    from glassbox_trainer.curves import probe_config
    from glassbox_trainer.data import eval_loader
    from glassbox_trainer.export import export_model

    card_path = Path(card_path)
    card = load_card(card_path)
    if not card.weights_file:
        raise ValueError(f"{card_path}: the card ships no weights file to export")
    cfg = load_train_config(config_path, section)
    task = build_task(cfg.task, cfg.task_cfg)
    if getattr(task.cfg, "init_weights", ""):       # the card's weights replace what the recipe starts from
        task.cfg = replace(task.cfg, init_weights="")
    model = task.build_model(cfg.model_size)
    weights = load_state(card_path.parent / card.weights_file)[1]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f"{card_path}: its weights do not fit the network of {config_path}: {exc}") from None
    model.eval()
    with torch.no_grad():
        metrics = {k: float(v) for k, v in task.evaluate(model, eval_loader(task, task.datasets()[1], cfg)).items()}
    reference = task.reference_set() if hasattr(task, "reference_set") else task.datasets()[1]
    training = dict(card.training, rebuilt={
        "command": command or f"python -m glassbox_trainer.reexport {card_path} --rebuild {config_path}",
        "config": str(config_path)})
    new = export_model(task, model, Path(out_dir) if out_dir else card_path.parent, card.name, metrics,
                       eval_loader(task, reference, cfg), probe_config(cfg), training, cfg.export.parity_atol,
                       cfg.export.entropy_batches, weights=weights)
    return deploy_graph(new)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="+", help="model card YAML files")
    parser.add_argument("--reference", action="store_true", help="recompute the reference entropy profile")
    parser.add_argument("--rescore", metavar="CONFIG", help="evaluate the weights again under this training config "
                        "(same network; e.g. a changed decoder) and replace the card's metrics; no re-export")
    parser.add_argument("--rebuild", metavar="CONFIG", help="export the weights again through today's model code "
                        "under this training config (new graph, metrics and calibration)")
    parser.add_argument("--out", help="where --rebuild writes the card (default: beside the card)")
    parser.add_argument("--section", help="section of a multi-section --rescore / --rebuild config")
    args = parser.parse_args(argv)
    import shlex
    import sys
    command = "python -m glassbox_trainer.reexport " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.rebuild:
        for path in args.cards:
            new = rebuild(path, args.rebuild, args.section, args.out, command)
            print(f"{path}: rebuilt as {new}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in list(load_card(new).metrics.items())[:8]))
        return
    if args.rescore:
        for path in args.cards:
            card = rescore(path, args.rescore, args.section, command)
            print(f"{path}: rescored under {args.rescore}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in list(card.metrics.items())[:8]))
        return
    for path in args.cards:
        card = reexport(path)
        if args.reference:
            card = recompute_reference(path)
            print(f"{path}: reference profile recomputed on {card.entropy_reference.num_inputs} inputs")
        print(f"{path}: {card.file} sha256 {card.sha256[:12]}..., entropy of {len(card.features)} layers in the graph")


if __name__ == "__main__":
    main()
