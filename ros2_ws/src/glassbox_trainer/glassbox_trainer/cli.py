"""``glassbox-train``: train, resume, distil and export one task from its YAML config.

    glassbox-train --config config/train/<task>.yaml [--section NAME] [--out runs/<name>] [--resume]
                   [--export models/]
    glassbox-train --config config/train/<task>.yaml [--section NAME] --prepare-data WORKERS

Multi-process: ``torchrun --nproc_per_node=N -m glassbox_trainer.cli --config ...`` (or the console script
under torchrun); only rank 0 writes files and exports.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from glassbox.config import to_dict
from glassbox_trainer.config import load_train_config
from glassbox_trainer.checkpoint import load_state_dict_file
from glassbox_trainer.curves import probe_config
from glassbox_trainer.data import eval_loader
from glassbox_trainer.train import command_line, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glassbox-train", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="training config, e.g. config/train/lidar.yaml")
    p.add_argument("--section", default=None, help="top-level section of the config file (files with several runs)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<task>[_<section>])")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt if it exists")
    p.add_argument("--export", default=None, metavar="DIR", help="after training, write ONNX + model card to DIR")
    p.add_argument("--reevaluate", action="store_true",
                   help="with --export: evaluate the final weights again under this config's evaluation settings "
                        "(e.g. a changed decoder) and put those metrics in the card")
    p.add_argument("--prepare-data", type=int, default=0, metavar="WORKERS",
                   help="only load every training and validation item once with WORKERS processes (this renders "
                        "and caches the synthetic data of tasks that cache it), print progress, and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def prepare_data(cfg, workers: int) -> int:
    """Load every item of the task's training and validation sets once, ``workers`` processes in parallel, so
    that the on-disk caches of the synthetic data are filled before a run starts; returns the item count."""
    import time

    from torch.utils.data import DataLoader

    from glassbox_trainer.task import build_task

    task = build_task(cfg.task, cfg.task_cfg)
    total = 0
    for split, dataset in zip(("train", "val"), task.datasets()):
        start, n = time.monotonic(), len(dataset)
        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                            collate_fn=lambda item: None)
        for i, _ in enumerate(loader, 1):
            if i % 100 == 0 or i == n:
                rate = i / max(time.monotonic() - start, 1e-9)
                print(f"{split}: {i}/{n} items, {rate:.2f} items/s, about {(n - i) / rate / 60:.1f} min left",
                      flush=True)
        total += n
    return total


def export_run(cfg, out: Path, result: dict, export_dir: Path, command: str, default_name: str = "",
               reevaluate: bool = False) -> Path:
    """Export the final weights of a finished run (ONNX, .pt, card) into ``export_dir`` as ``export.name``
    (default: ``default_name``, else the task name), as the deployed graph (``deploy_graph``). With
    ``reevaluate`` the card's metrics are those of the final weights evaluated now under ``cfg`` (its decoder
    settings included), not the run's last eval row."""
    import torch

    from glassbox_trainer.export import export_model
    from glassbox_trainer.task import build_task

    task = build_task(cfg.task, cfg.task_cfg)
    model = task.build_model(cfg.model_size)
    weights = load_state_dict_file(out / "model.pt")
    model.load_state_dict(weights)
    reference = task.reference_set() if hasattr(task, "reference_set") else task.datasets()[1]
    metrics = result["metrics"]
    if reevaluate:
        model.eval()
        with torch.no_grad():
            val = eval_loader(task, task.datasets()[1], cfg)
            metrics = {k: float(v) for k, v in task.evaluate(model, val).items()}
        result["metrics"] = metrics
    training = {"command": command, "data": cfg.export.data, "seed": cfg.seed, "steps": result["steps"],
                "loss": result["formula"], "train_seconds": round(float(result.get("train_seconds", 0.0)), 1),
                "config": to_dict(cfg)}
    card_path = export_model(task, model, export_dir, cfg.export.name or default_name or task.name, metrics,
                             eval_loader(task, reference, cfg), probe_config(cfg), training, cfg.export.parity_atol,
                             cfg.export.entropy_batches, weights=weights)
    return deploy_graph(card_path)


def deploy_graph(card_path: Path) -> Path:
    """Turn an exported card of a shipped model family into what a node runs: the graph re-exported with the
    entropy computed inside it (``glassbox.export.reexport``) and the reference entropy profile recomputed by
    that graph (``glassbox_trainer.reexport.recompute_reference``), so that the monitor compares the node's
    estimate with a reference of the same estimator. Cards of other tasks (no pipeline runs them) are kept."""
    from glassbox.export.reexport import pipeline_classes, reexport
    from glassbox.models import load_card
    from glassbox_trainer.reexport import recompute_reference

    if load_card(card_path).task in pipeline_classes():
        reexport(card_path)
        recompute_reference(card_path)
    return card_path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_train_config(args.config, args.section)
    name = cfg.task.replace(":", "_") + (f"_{args.section}" if args.section else "")
    if args.prepare_data:
        print(json.dumps({"prepared_items": prepare_data(cfg, args.prepare_data)}))
        return 0
    out = Path(args.out or f"runs/{name}")
    command = command_line()
    result = train(cfg, out, resume=args.resume, command=command)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.export:
        result["card"] = str(export_run(cfg, out, result, Path(args.export), command,
                                        default_name=name if args.section else "",
                                        reevaluate=args.reevaluate))
    print(json.dumps({k: v for k, v in result.items() if k != "fmcs"}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
