"""Trainer task ``refiner``: self-supervised restoration of randomly corrupted images (D4.2 §2.1, Eq. 7).

Each training item is a clean random crop; ``loss`` corrupts it with one random photometric transformation
(brightness, contrast or hue; ``glassbox.vision.corruptions``) and takes the pixel MSE between the refiner's
output and the clean crop. No downstream model is in the loss. Sources: colour photographs bundled with
scikit-image (``astronaut``, ``chelsea`` and ``rocket`` are held out for testing) and, when ``synthetic_frames``
> 0, day-lit RGB frames of the synthetic world's training split (the frame cache of ``tasks/segmentation.py``).
Validation = PSNR over the held-out photographs under every deterministic test corruption.

Shipped model: ``glassbox-train --config config/train/refiner.yaml --out runs/refiner --export models/``.
Downstream table (segmentation mIoU and fusion mAP with and without the refiner, from the shipped cards):
``python -m glassbox_trainer.tasks.refiner downstream --frames 30``.
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
from glassbox.vision.corruptions import BASELINES, EVAL_CORRUPTIONS, random_corruption
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
    crop: int = 128
    train_items: int = 4096
    synthetic_frames: int = 0
    reference_frames: int = 8        # day-lit validation frames of the card's reference entropy profile
    data: CameraDataConfig = CameraDataConfig()
    seed: int = 0


class CropDataset(EpochDataset):
    """Random crops (with horizontal flips) of a list of uint8 RGB images, as float (3, S, S); new ones every epoch."""

    def __init__(self, images: list[np.ndarray], crop: int, length: int, seed: int) -> None:
        self.images = [im for im in images if min(im.shape[:2]) >= crop]
        if not self.images:
            raise ValueError(f"no image is at least {crop}x{crop}")
        self.crop, self.length, self.seed = crop, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Tensor:
        rng = self.item_rng(i)
        img = self.images[rng.integers(len(self.images))]
        y = rng.integers(0, img.shape[0] - self.crop + 1)
        x = rng.integers(0, img.shape[1] - self.crop + 1)
        patch = img[y:y + self.crop, x:x + self.crop]
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

    def build_model(self, size: str = "default") -> nn.Module:
        return Refiner(self.cfg.model)

    def datasets(self) -> tuple[Dataset, Dataset]:
        images = [load_photo(n) for n in TRAIN_PHOTOS]
        images += synthetic_rgb_frames(self.cfg.synthetic_frames, self.cfg.data)
        return CropDataset(images, self.cfg.crop, self.cfg.train_items, self.cfg.seed), PhotoDataset(TEST_PHOTOS)

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
        corrupted = random_corruption(clean, gen)
        feats = model.forward_features(corrupted)
        out = model.forward_head(feats).refined
        mse = torch.mean((out - clean) ** 2)
        return mse, {"mse": float(mse.detach())}, {"features": feats, "logits": out}

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        gains = []
        for batch in loader:
            for clean in batch["clean"]:
                clean = clean[None]
                ref = _to_uint8(clean)
                for fn in EVAL_CORRUPTIONS.values():
                    bad = fn(clean)
                    gains.append(psnr(ref, _to_uint8(model(bad).refined), 255) - psnr(ref, _to_uint8(bad), 255))
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


def photo_table(model: nn.Module) -> dict[str, dict[str, dict[str, float]]]:
    """PSNR/SSIM (vs the clean photo) per corruption and method over the held-out photographs (means)."""
    model = model.eval()
    methods = ("corrupted", "refiner", *BASELINES)
    acc: dict[str, dict[str, list[tuple[float, float]]]] = {c: {m: [] for m in methods} for c in EVAL_CORRUPTIONS}
    with torch.no_grad():
        for clean in PhotoDataset(TEST_PHOTOS):
            clean = clean[None]
            ref = _to_uint8(clean)
            for cname, fn in EVAL_CORRUPTIONS.items():
                bad = _to_uint8(fn(clean))
                bad_t = torch.from_numpy(bad).permute(2, 0, 1)[None].float() / 255.0
                outs = {"corrupted": bad, "refiner": _to_uint8(model(bad_t).refined)}
                outs.update({m: f(bad) for m, f in BASELINES.items()})
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


def main(argv: list[str] | None = None) -> int:
    """``python -m glassbox_trainer.tasks.refiner downstream``: the downstream table as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Downstream mIoU/mAP with and without the refiner.")
    parser.add_argument("command", choices=["downstream"])
    parser.add_argument("--refiner", default="models/refiner.card.yaml")
    parser.add_argument("--segmentation", default="models/bisenet.card.yaml")
    parser.add_argument("--fusion", default="models/gem.card.yaml")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", default="bench/results/camera_downstream.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = downstream_table(args.refiner, args.segmentation, args.fusion, args.frames)
    with open(args.out, "w") as fh:
        json.dump({"frames": args.frames, "table": result}, fh, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
