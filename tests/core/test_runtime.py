"""The inference runtime: provider lists (with Jetson options) as handed to ONNX Runtime, loud fallback, and
torch vs ONNX Runtime giving the same outputs and feature maps for every shipped model card."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from glassbox.entropy import ProbeConfig
from glassbox.models.card import load_card
from glassbox.pipelines import FusionPipeline, LidarDetectionPipeline, RefinerPipeline, SegmentationPipeline
from glassbox.runtime import (CudaOptions, OrtBackend, ProviderError, ProviderOptions, RuntimeConfig,
                              TensorRTOptions, TorchBackend, session_providers)
from glassbox.runtime import providers as providers_mod

MODELS = Path(__file__).resolve().parents[2] / "models"
ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
BY_TASK = {"lidar": LidarDetectionPipeline, "image_refinement": RefinerPipeline,
           "semantic_segmentation": SegmentationPipeline, "rgbt_detection": FusionPipeline}


def test_requested_providers_carry_their_options_in_order():
    opts = ProviderOptions(tensorrt=TensorRTOptions(fp16=False, cache_dir="~/trt", device_id=1,
                                                    max_workspace_bytes=2 << 30), cuda=CudaOptions(device_id=1))
    got, warnings = session_providers(("tensorrt", "cuda", "cpu"), opts, available=ALL)
    assert warnings == []
    assert got == [("TensorrtExecutionProvider", {"device_id": 1, "trt_max_workspace_size": 2 << 30,
                                                  "trt_fp16_enable": False, "trt_engine_cache_enable": True,
                                                  "trt_engine_cache_path": str(Path.home() / "trt")}),
                   ("CUDAExecutionProvider", {"device_id": 1}), ("CPUExecutionProvider", {})]
    default, _ = session_providers(("tensorrt",), available=ALL)
    trt = default[0][1]
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True and trt["device_id"] == 0
    assert trt["trt_engine_cache_path"] == str(Path.home() / ".cache/glassbox/trt")
    no_cache, _ = session_providers(("tensorrt",), ProviderOptions(TensorRTOptions(engine_cache=False)), ALL)
    assert "trt_engine_cache_path" not in no_cache[0][1]
    cpu_only, _ = session_providers(("cpu",), opts, available=ALL)
    assert cpu_only == [("CPUExecutionProvider", {})]          # options apply only to their own provider


def test_unavailable_providers_are_reported_and_fall_back_to_the_cpu():
    got, warnings = session_providers(("tensorrt", "cuda"), available=["CPUExecutionProvider"])
    assert got == [("CPUExecutionProvider", {})]
    assert len(warnings) == 3 and "tensorrt" in warnings[0] and "cuda" in warnings[1]
    assert "FALLING BACK" in warnings[2]
    got, warnings = session_providers(("tensorrt", "cpu"), available=["CPUExecutionProvider"])
    assert got == [("CPUExecutionProvider", {})] and len(warnings) == 1
    with pytest.raises(ProviderError):
        session_providers(("cuda",), available=["CPUExecutionProvider"], allow_fallback_to_cpu=False)
    with pytest.raises(ValueError, match="unknown execution provider"):
        session_providers(("tpu",), available=ALL)


def test_ort_backend_records_the_provider_in_use_and_warns(caplog):
    path = MODELS / "refiner.onnx"
    with caplog.at_level(logging.WARNING, logger="glassbox.runtime"):
        backend = OrtBackend(path, RuntimeConfig(backend="onnxruntime", providers=("cuda",)), ["refined"])
    if "CUDAExecutionProvider" in providers_mod.available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    assert backend.providers == ["CPUExecutionProvider"]
    assert any("cuda" in w for w in backend.warnings) and any("FALLING BACK" in w for w in backend.warnings)
    assert sum("FALLING BACK" in r.getMessage() for r in caplog.records) == 1


def test_ort_backend_passes_the_options_and_reports_a_provider_ort_dropped(monkeypatch, caplog):
    """A provider ORT lists but cannot start (e.g. TensorRT without its libraries) is dropped by ORT itself."""
    import onnxruntime as ort

    seen = {}
    real = ort.InferenceSession

    def session(path, sess_options=None, providers=None):
        seen["providers"] = providers
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(providers_mod, "available_providers", lambda: ALL)
    monkeypatch.setattr(ort, "InferenceSession", session)
    cfg = RuntimeConfig(backend="onnxruntime", providers=("tensorrt", "cpu"), threads=1)
    with caplog.at_level(logging.WARNING, logger="glassbox.runtime"):
        backend = OrtBackend(MODELS / "refiner.onnx", cfg, ["refined"])
    assert seen["providers"] == [("TensorrtExecutionProvider", TensorRTOptions().provider_options()),
                                 ("CPUExecutionProvider", {})]
    assert backend.providers == ["CPUExecutionProvider"]
    assert len(backend.warnings) == 1 and "TensorrtExecutionProvider" in backend.warnings[0]
    assert "FALLING BACK to CPUExecutionProvider" in caplog.text


def test_torch_backend_falls_back_loudly_without_cuda(caplog):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    from glassbox.heads import RefinedImage
    from glassbox.vision.refiner import Refiner

    with caplog.at_level(logging.WARNING, logger="glassbox.runtime"):
        backend = TorchBackend(Refiner(), RuntimeConfig(device="cuda:0"), ["image"], RefinedImage._fields)
    assert backend.providers == ["torch:cpu"] and "FALLING BACK" in backend.warnings[0]
    assert backend.warnings[0] in caplog.text
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(backend.run({"image": x}).outputs["refined"], x, atol=1e-6)   # identity init


@pytest.mark.parametrize("card_path", sorted(MODELS.glob("*.card.yaml")), ids=lambda p: p.name.split(".")[0])
def test_both_backends_give_the_same_outputs_for_every_shipped_card(card_path):
    card = load_card(card_path)
    cls = BY_TASK[card.task]
    pipes = [cls.from_card(card_path, backend=b, threads=1) for b in ("torch", "onnxruntime")]
    assert [p.runtime.providers for p in pipes] == [["torch:cpu"], ["CPUExecutionProvider"]]
    assert pipes[0].runtime.output_names == pipes[1].runtime.output_names == tuple(card.outputs)
    rng = np.random.default_rng(0)
    inputs = {n: rng.random(s["shape"], dtype=np.float32) for n, s in card.inputs.items()}
    (out_t, _, ent_t), (out_o, feat_o, ent_o) = (p.runtime.run(inputs) for p in pipes)
    tol = max(10 * (card.parity_max_abs_diff or 0.0), 1e-4)
    for name in card.outputs:
        assert out_t[name].shape == out_o[name].shape
        np.testing.assert_allclose(out_t[name], out_o[name], atol=tol, rtol=1e-4, err_msg=name)
    # the shipped graphs return the in-graph entropy statistics, not the feature maps; eager torch computes
    # the same statistics with the same module
    assert feat_o == {} and ent_t.layers == ent_o.layers == card.features
    np.testing.assert_array_equal(ent_t.sizes, ent_o.sizes)
    np.testing.assert_allclose(ent_t.mean_log_r, ent_o.mean_log_r, atol=1e-4, rtol=1e-4)
    profiles = [p.entropy(p.runtime.run(inputs)) for p in pipes]
    assert profiles[0].estimator_params == profiles[1].estimator_params
    assert profiles[0].estimator_params["positions"] == "stratified"
    np.testing.assert_allclose(profiles[0].entropy_nats, profiles[1].entropy_nats, atol=0.05, rtol=1e-4)


def test_unprobed_frames_run_the_graph_pruned_to_its_head():
    card_path = MODELS / "gem.card.yaml"
    pipe = FusionPipeline.from_card(card_path, threads=1, probe=ProbeConfig(every_n=2))
    inputs = {n: np.random.default_rng(1).random(s["shape"], dtype=np.float32)
              for n, s in load_card(card_path).inputs.items()}
    full, head = pipe.runtime.run(inputs), pipe.runtime.run(inputs, entropy=False)
    assert full.entropy is not None and head.entropy is None and head.features == {}
    assert [o.name for o in pipe.runtime.head_session().get_outputs()] == list(pipe.runtime.output_names)
    for name, value in full.outputs.items():
        np.testing.assert_allclose(head.outputs[name], value, atol=1e-5, rtol=1e-5)
