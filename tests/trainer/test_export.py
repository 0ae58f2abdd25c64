"""Export: ONNX with feature outputs, ORT parity, model cards with sha256 and a reference entropy profile."""
import hashlib
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from glassbox.models import (ModelCard, ModelCardError, ModelIntegrityError, load_card, save_card, verify_model_file,
                             verify_weights_file)
from glassbox.runtime import OrtBackend
from glassbox_trainer.export import ExportError, check_parity, export_with_features
from glassbox_trainer.train import read_log
from test_train import cli, env, write_config
from tiny_task import TinyNet, TinyTask


def test_onnx_export_has_feature_outputs_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(width=4).eval()
    path = tmp_path / "tiny.onnx"
    spec = export_with_features(model, {"image": torch.zeros(1, 3, 12, 12)}, path, ["logits"])
    assert spec == {"inputs": {"image": {"shape": [1, 3, 12, 12], "dtype": "float32"}}, "outputs": ["logits"],
                    "features": ["stem", "block1", "block2", "block3"]}
    x = np.random.default_rng(0).standard_normal((3, 3, 12, 12)).astype(np.float32)   # dynamic batch
    out = OrtBackend(path).run({"image": x}).outputs
    with torch.no_grad():
        feats = model.forward_features(torch.from_numpy(x))
        logits = model(torch.from_numpy(x))
    np.testing.assert_allclose(out["logits"], logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["block2"], feats["block2"].numpy(), atol=1e-5)
    diffs = check_parity(model, path, {"image": x})
    assert set(diffs) == {"logits", "stem", "block1", "block2", "block3"} and max(diffs.values()) < 1e-4


def test_parity_check_fails_when_the_graph_is_not_the_model(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(width=4)
    path = tmp_path / "tiny.onnx"
    export_with_features(model, {"image": torch.zeros(1, 3, 12, 12)}, path, ["logits"])
    with torch.no_grad():
        model.head.bias.add_(1.0)
    with pytest.raises(ExportError, match="differ by"):
        check_parity(model, path, {"image": np.zeros((1, 3, 12, 12), np.float32)})


def _card(tmp_path, content=b"model bytes") -> tuple[ModelCard, object]:
    f = tmp_path / "m.onnx"
    f.write_bytes(content)
    card = ModelCard(name="m", task="tiny", file="m.onnx", sha256=hashlib.sha256(content).hexdigest(),
                     inputs={"image": {"shape": [1, 3, 12, 12], "dtype": "float32"}}, outputs=("logits",),
                     metrics={"pixel_acc": 0.5})
    return card, f


def test_card_round_trip_and_integrity_check(tmp_path):
    card, f = _card(tmp_path)
    path = save_card(card, tmp_path / "m.card.yaml")
    assert load_card(path) == card
    assert verify_model_file(path) == f
    assert verify_model_file(card, f) == f
    f.write_bytes(b"model bytez")
    with pytest.raises(ModelIntegrityError) as err:
        verify_model_file(path)
    msg = str(err.value)
    assert str(f) in msg and card.sha256 in msg and hashlib.sha256(b"model bytez").hexdigest() in msg
    f.unlink()
    with pytest.raises(ModelIntegrityError, match="not found"):
        verify_model_file(path)


def test_weights_file_is_checked_against_the_card(tmp_path):
    card, _ = _card(tmp_path)
    w = tmp_path / "m.pt"
    w.write_bytes(b"weights")
    card = replace(card, weights_file="m.pt", weights_sha256=hashlib.sha256(b"weights").hexdigest())
    assert verify_weights_file(card, w) == w
    w.write_bytes(b"weightz")
    with pytest.raises(ModelIntegrityError) as err:
        verify_weights_file(card, w)
    assert card.weights_sha256 in str(err.value) and hashlib.sha256(b"weightz").hexdigest() in str(err.value)
    assert verify_weights_file(replace(card, weights_sha256=""), w) == w      # no recorded hash: existence only
    w.unlink()
    with pytest.raises(ModelIntegrityError, match="not found"):
        verify_weights_file(card, w)


def test_malformed_cards_are_rejected(tmp_path):
    card, _ = _card(tmp_path)
    path = save_card(card, tmp_path / "m.card.yaml")
    data = yaml.safe_load(path.read_text())
    data["sha256"] = "abc"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelCardError, match="sha256"):
        load_card(path)
    data["sha256"] = card.sha256
    data["colour"] = "red"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelCardError, match="unknown key 'colour'"):
        load_card(path)


def test_cli_train_and_export_writes_a_card_that_matches_its_files_and_metrics(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", steps=8, ckpt_every=8, eval_every=0,
                          export={"name": "tiny_seg", "data": "generated noise, seeds 1 and 2"})
    models = tmp_path / "models"
    subprocess.run(cli("--config", str(config), "--out", str(tmp_path / "run"), "--export", str(models)),
                   env=env(), check=True, capture_output=True)
    card_path = models / "tiny_seg.card.yaml"
    card = load_card(card_path)
    assert verify_model_file(card_path) == models / "tiny_seg.onnx"
    assert hashlib.sha256((models / "tiny_seg.pt").read_bytes()).hexdigest() == card.weights_sha256
    assert card.classes == ("a", "b", "c") and card.features == ("stem", "block1", "block2", "block3")
    assert card.training["command"].startswith("glassbox-train --config")
    assert card.training["data"] == "generated noise, seeds 1 and 2"
    assert card.parity_max_abs_diff < 1e-3
    ref = card.entropy_reference
    assert ref.layer_names == card.features and ref.num_inputs == 8
    assert all(s > 0 for s in ref.std_nats) and all(np.isfinite(ref.mean_nats))
    # the card's metric is reproduced by evaluating the shipped weights on the fixed validation split
    task = TinyTask({"train_items": 64, "val_items": 8})
    model = task.build_model()
    model.load_state_dict(torch.load(models / "tiny_seg.pt", weights_only=True))
    _, val = task.datasets()
    loader = torch.utils.data.DataLoader(val, batch_size=4, collate_fn=task.collate)
    with torch.no_grad():
        assert task.evaluate(model.eval(), loader)["pixel_acc"] == pytest.approx(card.metrics["pixel_acc"])
    assert read_log(tmp_path / "run" / "eval.csv")[-1]["pixel_acc"] == pytest.approx(card.metrics["pixel_acc"])


def test_reevaluate_puts_the_weights_metrics_in_the_card_not_the_last_eval_row(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", steps=4, ckpt_every=4, eval_every=0,
                          export={"name": "tiny_seg", "data": "generated noise"})
    run, models = tmp_path / "run", tmp_path / "models"
    subprocess.run(cli("--config", str(config), "--out", str(run)), env=env(), check=True, capture_output=True)
    rows = (run / "eval.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = rows[-1].split(",")
    true_acc = float(last[header.index("pixel_acc")])
    last[header.index("pixel_acc")] = "-1.0"                       # a stale row, e.g. of another decoder
    (run / "eval.csv").write_text("\n".join(rows[:-1] + [",".join(last)]) + "\n")
    for flags, expected in (((), -1.0), (("--reevaluate",), true_acc)):
        subprocess.run(cli("--config", str(config), "--out", str(run), "--resume", "--export", str(models), *flags),
                       env=env(), check=True, capture_output=True)
        assert load_card(models / "tiny_seg.card.yaml").metrics["pixel_acc"] == pytest.approx(expected)
