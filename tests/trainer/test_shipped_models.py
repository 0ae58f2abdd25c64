"""Every shipped model in models/ matches its card, and the card's metrics are reproduced by evaluation."""
from pathlib import Path

import pytest
import torch

from glassbox.models import load_card, sha256_file, verify_model_file
from glassbox_trainer.config import train_config_from_dict
from glassbox_trainer.task import build_task
from glassbox_trainer.train import eval_loader

MODELS = Path(__file__).resolve().parents[2] / "models"
CARDS = sorted(MODELS.glob("*.card.yaml"))
# cards written by ``glassbox-train --export`` carry the whole training config (with the task's own section)
TRAINED_HERE = [p for p in CARDS if "task_cfg" in load_card(p).training.get("config", {}) and load_card(p).weights_file]


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.name)
def test_shipped_model_files_match_their_card(card_path):
    card = load_card(card_path)
    assert verify_model_file(card_path) == card_path.parent / card.file
    if card.weights_file:
        assert sha256_file(card_path.parent / card.weights_file) == card.weights_sha256
    assert card.entropy_reference is not None and len(card.entropy_reference.layer_names) > 0


@pytest.mark.slow
@pytest.mark.parametrize("card_path", TRAINED_HERE, ids=lambda p: p.name)
def test_shipped_model_metrics_are_reproduced_on_the_fixed_validation_split(card_path):
    card = load_card(card_path)
    cfg = train_config_from_dict(card.training["config"], source=str(card_path))
    # The shipped weights replace whatever the model starts from, so a fine-tuning stage's init_weights (a file
    # of the training run, not shipped) is not needed here.
    task_cfg = {k: v for k, v in dict(cfg.task_cfg).items() if k != "init_weights"}
    task = build_task(cfg.task, task_cfg)
    model = task.build_model(cfg.model_size)
    model.load_state_dict(torch.load(card_path.parent / card.weights_file, map_location="cpu", weights_only=True))
    _, val = task.datasets()
    with torch.no_grad():
        metrics = task.evaluate(model.eval(), eval_loader(task, val, cfg))
    for name, value in card.metrics.items():
        assert metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-4), name
