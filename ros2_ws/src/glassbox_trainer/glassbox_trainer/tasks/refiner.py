"""Trainer task ``refiner``: self-supervised restoration of randomly corrupted images (D4.2 §2.1, Eq. 7).

Each training item is a clean random view of a whole photograph (a crop covering ``min_view`` to all of each side,
resized to ``crop`` x ``crop``, so its range statistics are those of a full frame); ``loss`` corrupts it with a
random chain of one to three photometric operations (brightness, contrast, hue, colour cast, sensor noise,
veiling glare; ``glassbox.vision.corruptions.random_corruption``), quantises it to 8 bits like a camera, and
compares the refiner's clipped output with the clean view: ``loss: mse`` (the seed's Eq. 7) or ``loss: psnr``,
the mean over images of ``10 log10(MSE_i + 1e-6)`` (minus the mean PSNR), which weighs every image's error
relatively, as the PSNR table does. No downstream model is in the loss. Sources: colour photographs bundled with
scikit-image (``astronaut``, ``chelsea`` and ``rocket`` are held out for testing) and, when ``synthetic_frames``
> 0, day-lit RGB frames of the synthetic world's training split (the frame cache of ``tasks/segmentation.py``).
Validation = mean PSNR gain over the held-out photographs under every corruption of ``CORRUPTIONS``.

Shipped model: ``glassbox-train --config config/train/refiner.yaml --out runs/refiner --export models/``.
Baseline settings (``glassbox.vision.baselines.BEST``), tuned on the training photographs:
``python -m glassbox_trainer.tasks.refiner tune``. Photograph table (refiner vs baselines, held-out photographs):
``python -m glassbox_trainer.tasks.refiner photos``. Downstream table (segmentation mIoU and fusion mAP with and
without the refiner, from the shipped cards): ``python -m glassbox_trainer.tasks.refiner downstream --frames 30``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from glassbox.config import from_dict, to_dict
from glassbox.metrics.image_quality import psnr, ssim
from glassbox.vision import baselines
from glassbox.vision.corruptions import CORRUPTIONS, EVAL_CORRUPTIONS, apply_ops, random_corruption
from glassbox.export import export_with_features
from glassbox.vision.refiner import Refiner, RefinerConfig
from glassbox_trainer.data import EpochDataset
from glassbox_trainer.tasks.segmentation import CameraDataConfig, render_frame

TRAIN_PHOTOS = ("coffee", "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle",
                "colorwheel", "camera", "clock", "coins", "grass", "gravel", "brick")
TEST_PHOTOS = ("astronaut", "chelsea", "rocket")


def load_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photograph as uint8 RGB (H, W, 3); grey images are replicated to 3 channels."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):             # stereo_motorcycle -> (left, right, disparity): keep the left view
        img = img[0]
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


@dataclass(frozen=True)
class RefinerTaskConfig:
    model: RefinerConfig = RefinerConfig()
    crop: int = 96
    min_view: float = 0.6            # a training view covers this fraction (or more) of each side of a photograph
    train_items: int = 4096
    loss: str = "psnr"               # "psnr" (mean per-image log MSE) or "mse" (the seed's pixel MSE)
    synthetic_frames: int = 0
    reference_frames: int = 8        # day-lit validation frames of the card's reference entropy profile
    data: CameraDataConfig = CameraDataConfig()
    seed: int = 0


class ViewDataset(EpochDataset):
    """Random views of a list of uint8 RGB images: a crop covering ``min_view`` to 1 of each side, resized (area)
    to ``size`` x ``size``, flipped horizontally half the time; float (3, S, S), new ones every epoch."""

    def __init__(self, images: list[np.ndarray], size: int, length: int, seed: int, min_view: float = 0.6) -> None:
        if not images:
            raise ValueError("no training images")
        if not 0.0 < min_view <= 1.0:
            raise ValueError(f"min_view must lie in (0, 1], got {min_view}")
        self.images, self.size, self.length, self.seed, self.min_view = images, size, length, seed, min_view

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Tensor:
        import cv2

        rng = self.item_rng(i)
        img = self.images[rng.integers(len(self.images))]
        h, w = img.shape[:2]
        ch, cw = (max(1, int(round(side * rng.uniform(self.min_view, 1.0)))) for side in (h, w))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        patch = cv2.resize(img[y:y + ch, x:x + cw], (self.size, self.size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float() / 255.0


class PhotoDataset(Dataset):
    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.images = [load_photo(n) for n in names]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(self.images[i]).permute(2, 0, 1).float() / 255.0


def synthetic_rgb_frames(n: int, data: CameraDataConfig) -> list[np.ndarray]:
    """RGB images of the first ``n`` day-lit training frames of the synthetic world (rendered or cached)."""
    frames, index = [], 0
    while len(frames) < n:
        frame = render_frame(data, "train", index)
        if str(frame["lighting"]) == "day":
            frames.append(frame["rgb"])
        index += 1
    return frames


class RefinerTask:
    name = "refiner"
    metric = "psnr_gain_db"
    eloss_groups: list[list[str]] = []

    def __init__(self, cfg: dict) -> None:
        self.cfg = from_dict(RefinerTaskConfig, cfg, source="refiner task")
        if self.cfg.loss not in ("psnr", "mse"):
            raise ValueError(f"refiner loss must be 'psnr' or 'mse', got '{self.cfg.loss}'")

    def build_model(self, size: str = "default") -> nn.Module:
        return Refiner(self.cfg.model)

    def datasets(self) -> tuple[Dataset, Dataset]:
        images = [load_photo(n) for n in TRAIN_PHOTOS]
        images += synthetic_rgb_frames(self.cfg.synthetic_frames, self.cfg.data)
        train = ViewDataset(images, self.cfg.crop, self.cfg.train_items, self.cfg.seed, self.cfg.min_view)
        return train, PhotoDataset(TEST_PHOTOS)

    def collate(self, items: list) -> dict:
        """Stacked crops; validation photographs of different sizes stay a list (evaluated one by one)."""
        if all(it.shape == items[0].shape for it in items):
            return {"clean": torch.stack(items)}
        return {"clean": list(items)}

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float], dict[str, Any]]:
        clean = batch["clean"]
        if isinstance(clean, list):                    # photographs of different sizes: one at a time
            parts = [self.loss(model, {"clean": c[None]}) for c in clean]
            total = torch.stack([p[0] for p in parts]).mean()
            return total, {"mse": float(total.detach())}, parts[-1][2]
        # drawn from the global torch RNG (through a generator seeded from it), which a checkpoint restores
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
        corrupted = torch.floor(random_corruption(clean, gen) * 255.0 + 0.5) / 255.0     # an 8-bit camera frame
        feats = model.forward_features(corrupted)
        out = model.forward_head(feats).refined
        err = ((out.clamp(0.0, 1.0) - clean) ** 2).mean(dim=(1, 2, 3))                  # (B,) per-image MSE
        mse = err.mean()
        if self.cfg.loss == "mse":
            return mse, {"mse": float(mse.detach())}, {"features": feats, "logits": out}
        neg_psnr = (10.0 * torch.log10(err + 1e-6)).mean()
        return neg_psnr, {"mse": float(mse.detach()), "neg_psnr_db": float(neg_psnr.detach())}, \
            {"features": feats, "logits": out}

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        gains = []
        for batch in loader:
            for clean in batch["clean"]:
                ref = _to_uint8(clean[None])
                for bad in corrupted_versions(ref).values():
                    out = _to_uint8(model(_to_float(bad)).refined)
                    gains.append(psnr(ref, out, 255) - psnr(ref, bad, 255))
        return {"psnr_gain_db": float(np.mean(gains))}

    card_task = "image_refinement"

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        return (batch["clean"],)

    def card_extra(self, model: nn.Module) -> dict:
        d = self.cfg.data
        return {"model_config": to_dict(model.cfg),
                "entropy_reference_data": f"{self.cfg.reference_frames} day-lit synthetic validation frames "
                                          f"({d.width}x{d.height}), the camera domain the node runs on"}

    def reference_set(self) -> list[Tensor]:
        """Inputs of the card's reference entropy profile: day-lit synthetic validation frames, the camera domain
        the refiner node runs on (the held-out photographs are for PSNR, not for the monitor)."""
        from glassbox_trainer.tasks.segmentation import frame_indices

        data = self.cfg.data
        return [torch.from_numpy(render_frame(data, "val", i)["rgb"]).permute(2, 0, 1).float() / 255.0
                for i in frame_indices(data, "val", self.cfg.reference_frames, ("day",))]

    def report(self, model: nn.Module) -> dict:
        return {"photos": photo_table(model)}

    def export(self, model: nn.Module, path: str) -> dict:
        model = model.eval()
        example = torch.rand(1, self.cfg.model.in_channels, 128, 160)
        feats = [n for n in model.forward_features(example) if n != "stage3"]
        spec = export_with_features(model, {"image": example}, path, feature_names=feats, dynamic_spatial=True)
        spec["inputs"]["image"]["range"] = [0.0, 1.0]
        return spec


def _to_uint8(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounding as an 8-bit camera pipeline would."""
    return (x[0].detach().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def _to_float(img: np.ndarray) -> Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def corrupted_versions(clean: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Every corruption of ``CORRUPTIONS`` (but "clean") of a uint8 RGB image, quantised to uint8; the random
    ones (noise, glare) drawn with ``seed``."""
    x = _to_float(clean)
    return {name: _to_uint8(apply_ops(x, ops, seed=seed)) for name, ops in CORRUPTIONS.items() if ops}


def tuning_pairs(max_side: int = 320) -> list[tuple[np.ndarray, np.ndarray]]:
    """The baselines' tuning set: every training photograph (area-resized so its longer side is at most
    ``max_side``) under every corruption, as (clean, corrupted) uint8 pairs; never the held-out photographs."""
    import cv2

    pairs = []
    for i, name in enumerate(TRAIN_PHOTOS):
        img = load_photo(name)
        f = min(1.0, max_side / max(img.shape[:2]))
        if f < 1.0:
            img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
        # a corruption that leaves the photograph unchanged (hue of a grey one) says nothing about a correction
        pairs += [(img, bad) for bad in corrupted_versions(img, seed=i).values() if not np.array_equal(bad, img)]
    return pairs


def photo_table(model: nn.Module | None) -> dict[str, dict[str, dict[str, float]]]:
    """PSNR/SSIM (vs the clean photo) per corruption ("clean" too) and method over the held-out photographs
    (means): the corrupted input, the refiner (when given) and every baseline at its ``BEST`` setting."""
    methods = ("corrupted", *(("refiner",) if model is not None else ()), *baselines.BASELINES)
    acc: dict[str, dict[str, list[tuple[float, float]]]] = {c: {m: [] for m in methods} for c in CORRUPTIONS}
    with torch.no_grad():
        for clean in PhotoDataset(TEST_PHOTOS):
            ref = _to_uint8(clean[None])
            for cname, bad in {"clean": ref, **corrupted_versions(ref)}.items():
                outs = {"corrupted": bad}
                if model is not None:
                    outs["refiner"] = _to_uint8(model.eval()(_to_float(bad)).refined)
                outs.update({m: baselines.apply(m, bad) for m in baselines.BASELINES})
                for m, img in outs.items():
                    acc[cname][m].append((psnr(ref, img, 255), ssim(ref, img, 255)))
    return {c: {m: {"psnr_db": float(np.mean([v[0] for v in vals])), "ssim": float(np.mean([v[1] for v in vals]))}
                for m, vals in d.items()} for c, d in acc.items()}


def downstream_table(refiner_card: str, segmentation_card: str, fusion_card: str, frames: int = 30,
                     threads: int = 1) -> dict[str, dict[str, float]]:
    """The seed's claim, tested: downstream quality on corrupted synthetic validation frames with and without
    the refiner in front (the downstream models are used as trained, never adapted to the refiner).

    Per corruption: segmentation mIoU (``segmentation_card``'s model) and fusion mAP@0.5 (``fusion_card``'s
    model, RGB corrupted, thermal untouched), each without and with the refiner on the RGB image.
    """
    from glassbox.metrics.detection2d import Detections2D, GroundTruth2D, evaluate_detections_2d
    from glassbox.metrics.segmentation import SegmentationMeter
    from glassbox.pipelines import FusionPipeline, RefinerPipeline, SegmentationPipeline
    from glassbox.entropy import ProbeConfig
    from glassbox_trainer.tasks.segmentation import frame_indices, to_labels

    off = ProbeConfig(enabled=False)
    refiner = RefinerPipeline.from_card(refiner_card, backend="onnxruntime", probe=off, threads=threads)
    segs = {flag: SegmentationPipeline.from_card(segmentation_card, backend="onnxruntime", probe=off,
                                                 threads=threads, refiner=refiner if flag else None)
            for flag in (False, True)}
    fuss = {flag: FusionPipeline.from_card(fusion_card, backend="onnxruntime", probe=off, threads=threads,
                                           score_threshold=0.05, refiner=refiner if flag else None)
            for flag in (False, True)}
    seg, fus = segs[False], fuss[False]
    mode = "binary" if len(seg.class_names) == 2 else "multiclass"
    data = CameraDataConfig()
    iw, ih = fus.cfg.input_size
    table: dict[str, dict[str, float]] = {}
    corruptions = {"clean": lambda x: x, **EVAL_CORRUPTIONS}
    loaded = [render_frame(data, "val", i) for i in frame_indices(data, "val", frames)]
    for cname, fn in corruptions.items():
        row: dict[str, float] = {}
        for use_refiner in (False, True):
            meter = SegmentationMeter(len(seg.class_names))
            dets, gts = [], []
            for f in loaded:
                clean = torch.from_numpy(f["rgb"]).permute(2, 0, 1)[None].float() / 255.0
                rgb = _to_uint8(fn(clean))
                meter.update(segs[use_refiner](rgb).labels, to_labels(f["semantic"], mode))
                r = fuss[use_refiner](rgb, f["thermal"])
                dets.append(Detections2D(r.boxes, r.scores, r.classes))
                boxes = f["boxes2d"]
                small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (iw / f["rgb"].shape[1]) < 8
                gts.append(GroundTruth2D(boxes, f["box_classes"], small))
            tag = "refined" if use_refiner else "raw"
            row[f"miou_{tag}"] = float(meter.result()["miou"])
            row[f"map50_{tag}"] = float(evaluate_detections_2d(dets, gts, 3)["map50"])
        table[cname] = row
    return table


def markdown_table(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """The photograph table as markdown: PSNR / SSIM per corruption and method, the mean over the corruptions
    (without "clean") last; the best PSNR of each row in bold."""
    methods = list(next(iter(table.values())))
    rows = {**table, "mean (corruptions)": {m: {k: float(np.mean([table[c][m][k] for c in table if c != "clean"]))
                                                for k in ("psnr_db", "ssim")} for m in methods}}
    lines = ["| corruption | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for cname, row in rows.items():
        best = max(methods, key=lambda m: row[m]["psnr_db"])
        cells = [f"{row[m]['psnr_db']:.2f} / {row[m]['ssim']:.3f}" for m in methods]
        cells = [f"**{c}**" if m == best else c for m, c in zip(methods, cells)]
        lines.append(f"| {cname} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m glassbox_trainer.tasks.refiner tune|photos|downstream``: the baselines' grid search on the
    tuning set, the photograph table of the shipped refiner and the tuned baselines, or the downstream table;
    each as JSON under ``bench/results/``."""
    import argparse
    import json

    from glassbox.runtime import load_state

    parser = argparse.ArgumentParser(description="Refiner tables: baseline tuning, photographs, downstream.")
    parser.add_argument("command", choices=["tune", "photos", "downstream"])
    parser.add_argument("--refiner", default="models/refiner.card.yaml")
    parser.add_argument("--segmentation", default="models/bisenet.card.yaml")
    parser.add_argument("--fusion", default="models/gem.card.yaml")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", default=None, help="JSON file (default: bench/results/refiner_<command>.json, "
                                                    "camera_downstream.json for downstream)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "tune":
        result = {"tuning_set": f"training photographs {', '.join(TRAIN_PHOTOS)} (longer side <= 320 px) x "
                                f"{len(EVAL_CORRUPTIONS)} corruptions", "grids": baselines.GRIDS,
                  "best": baselines.tune(tuning_pairs())}
        out = args.out or "bench/results/refiner_tune.json"
    elif args.command == "photos":
        from glassbox.models import load_card
        from pathlib import Path

        card_path = Path(args.refiner)
        saved, state = load_state(card_path.parent / load_card(card_path).weights_file)
        model = Refiner(from_dict(RefinerConfig, saved, source=str(card_path)))
        model.load_state_dict(state)
        table = photo_table(model.eval())
        result = {"photos": TEST_PHOTOS, "baseline_settings": baselines.BEST, "table": table}
        print(markdown_table(table))
        out = args.out or "bench/results/refiner_photos.json"
    else:
        result = {"frames": args.frames,
                  "table": downstream_table(args.refiner, args.segmentation, args.fusion, args.frames)}
        out = args.out or "bench/results/camera_downstream.json"
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
    if args.command != "photos":
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
