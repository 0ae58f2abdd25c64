"""EntropyMonitor: z-scores, levels, hysteresis, staleness, and reference-file errors."""
from __future__ import annotations

import math

import pytest

from glassbox.models.card import EntropyReference, ModelCard, save_card
from glassbox.monitor import (EntropyMonitor, LayerReference, Level, MonitorConfig, ReferenceProfileError,
                              load_references)

REF = {"m": {"a": LayerReference(100.0, 2.0), "b": LayerReference(50.0, 1.0)}}


def test_z_score_is_closed_form_without_smoothing():
    mon = EntropyMonitor(REF, MonitorConfig(smoothing=1.0))
    h = mon.update("m", ["a", "b"], [104.0, 49.0])
    assert h.z_scores == {"a": pytest.approx(2.0), "b": pytest.approx(-1.0)}
    assert h.level == Level.OK


def test_levels_and_worst_layer_named():
    mon = EntropyMonitor(REF, MonitorConfig(smoothing=1.0, warn_z=3, error_z=6))
    assert mon.update("m", ["a", "b"], [100.0, 54.0]).level == Level.WARN      # z_b = 4
    h = mon.update("m", ["a", "b"], [100.0, 58.0])                              # z_b = 8
    assert h.level == Level.ERROR and h.worst_layers[0][0] == "b" and "b (z=+8.0)" in h.message


def test_hysteresis_holds_level_until_clearly_below():
    mon = EntropyMonitor(REF, MonitorConfig(smoothing=1.0, warn_z=3, error_z=6, hysteresis=0.8))
    mon.update("m", ["b"], [53.5])                                               # z = 3.5 -> WARN
    assert mon.update("m", ["b"], [52.6]).level == Level.WARN                    # 2.6 >= 2.4: stays
    assert mon.update("m", ["b"], [52.3]).level == Level.OK                      # 2.3 < 2.4: clears


def test_smoothing_is_an_ema():
    mon = EntropyMonitor(REF, MonitorConfig(smoothing=0.5))
    mon.update("m", ["a"], [100.0])
    h = mon.update("m", ["a"], [108.0])                                           # z 0 then 4 -> 2
    assert h.z_scores["a"] == pytest.approx(2.0)


def test_unknown_model_warns_and_nan_is_error():
    mon = EntropyMonitor(REF)
    assert mon.update("other", ["a"], [1.0]).level == Level.WARN
    h = mon.update("m", ["a", "c"], [math.nan, 3.0])
    assert h.level == Level.ERROR and h.unknown_layers == ["c"]


def test_stale_after_silence():
    mon = EntropyMonitor(REF, MonitorConfig(stale_after_s=2.0))
    mon.update("m", ["a"], [100.0], now_s=10.0)
    assert mon.states(now_s=11.0)[0].level == Level.OK
    assert mon.states(now_s=12.5)[0].level == Level.STALE


def test_configure_judges_levels_again_at_once():
    mon = EntropyMonitor(REF, MonitorConfig(smoothing=1.0, warn_z=3, error_z=6, hysteresis=0.8))
    mon.update("m", ["b"], [54.0])                                               # z = 4 -> WARN
    mon.configure(MonitorConfig(smoothing=1.0, warn_z=4.5, error_z=6, hysteresis=0.8))
    (h,) = mon.states()
    assert h.level == Level.OK and h.frames == 1                # 4 < 4.5, without waiting for a new profile
    mon.configure(MonitorConfig(smoothing=1.0, warn_z=2, error_z=3.5))
    assert mon.states()[0].level == Level.ERROR
    with pytest.raises(ValueError, match="warn_z < error_z"):
        MonitorConfig(warn_z=7.0, error_z=6.0)


def test_reset_forgets_the_smoothed_state_and_keeps_the_frame_count():
    mon = EntropyMonitor(REF, MonitorConfig(smoothing=0.1, warn_z=2, error_z=6))
    mon.update("m", ["b"], [50.0])
    for _ in range(3):
        h = mon.update("m", ["b"], [60.0])                                       # z = 10: EMA 1, 1.9, 2.71
    assert h.z_scores["b"] == pytest.approx(2.71) and h.level == Level.WARN
    mon.reset("m")
    h = mon.update("m", ["b"], [50.5])                                           # z = 0.5, not 0.1*0.5 + 0.9*2.71
    assert h.z_scores["b"] == pytest.approx(0.5) and h.level == Level.OK and h.frames == 5


def test_reference_files_table_and_card(tmp_path):
    table = tmp_path / "ref.yaml"
    table.write_text("models:\n  m:\n    layers:\n      a: {mean: 1.0, std: 0.5}\n")
    card = tmp_path / "card.yaml"
    save_card(ModelCard(name="n", task="toy", file="n.onnx", sha256="0" * 64,
                        entropy_reference=EntropyReference("knn", {"k": "1"}, ("x",), (2.0,), (0.1,), 10)), card)
    refs = load_references([table, card])
    assert refs["m"]["a"] == LayerReference(1.0, 0.5) and refs["n"]["x"].std == 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m:\n    layers:\n      a: {mean: 1.0}\n")
    with pytest.raises(ReferenceProfileError, match="layer 'a' of model 'm'"):
        load_references([bad])
    with pytest.raises(ReferenceProfileError, match="not found"):
        load_references([tmp_path / "missing.yaml"])
