"""Model cards of untrained (deterministically initialised) networks, for tests that exercise plumbing."""
from __future__ import annotations

from pathlib import Path


def make_lidar_card(folder: Path, height: int = 32, width: int = 512) -> Path:
    """A model card + ONNX file of an untrained SPI network (deterministic weights): enough to exercise a node
    end to end; detection quality is tested with the shipped model."""
    import torch

    from glassbox.lidar.decode import DecodeConfig
    from glassbox.lidar.projection import ProjectionConfig
    from glassbox.lidar.spi import SpiConfig, build_model
    from glassbox.models.card import ModelCard, save_card, sha256_file
    from glassbox.export import export_with_features
    from glassbox.pipelines.lidar import INPUT_NAME, card_extra

    torch.manual_seed(0)
    proj = ProjectionConfig(height=height, width=width)
    spi = SpiConfig()
    model = build_model("spi", spi)
    onnx_path = folder / "spi_test.onnx"
    spec = export_with_features(model, {INPUT_NAME: torch.zeros(1, spi.in_channels, height, width)}, onnx_path,
                                dynamic_spatial=True)
    card = ModelCard(name="spi_test", task="lidar_detection", file=onnx_path.name, sha256=sha256_file(onnx_path),
                     inputs=spec["inputs"], outputs=tuple(spec["outputs"]), features=tuple(spec["features"]),
                     classes=("car", "pedestrian", "cyclist"),
                     extra=card_extra(proj, spi, DecodeConfig(score_threshold=0.05)))
    return save_card(card, folder / "spi_test.card.yaml")


def make_camera_card(capability: str, folder: Path) -> Path:
    """Card + ONNX + .pt of an untrained camera model (refiner, segmentation or fusion), exported by the same
    trainer task code that exports the shipped models."""
    import torch

    from glassbox.models.card import ModelCard, save_card, sha256_file
    from glassbox_trainer.tasks.fusion import FusionTask
    from glassbox_trainer.tasks.refiner import RefinerTask
    from glassbox_trainer.tasks.segmentation import SegmentationTask

    task = {"refiner": RefinerTask, "segmentation": SegmentationTask, "fusion": FusionTask}[capability]({})
    torch.manual_seed(0)
    model = task.build_model()
    name = f"{capability}_test"
    onnx_path = folder / f"{name}.onnx"
    spec = task.export(model, str(onnx_path))
    weights = folder / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    card = ModelCard(name=name, task=capability, file=onnx_path.name, sha256=sha256_file(onnx_path),
                     inputs=spec["inputs"], outputs=tuple(spec["outputs"]), features=tuple(spec["features"]),
                     classes=tuple(spec.get("classes", ())), weights_file=weights.name,
                     weights_sha256=sha256_file(weights))
    return save_card(card, folder / f"{name}.card.yaml")
