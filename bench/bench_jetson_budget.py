"""Jetson budget on paper: expected per-node latency on Jetson Orin NX 16GB and AGX Orin 64GB with TensorRT fp16,
from each shipped model's measured work and the modules' published throughput.

Per shipped card, at the input size its node runs at:
  * the network's FLOPs (torch's FlopCounterMode, one multiply-add = 2 FLOPs), its activation traffic (every
    layer output written once and read once, fp16) and its number of kernel-launching layers (convolutions,
    linear layers, poolings, resamples; TensorRT fuses normalisation and activations into them);
  * the CPU parts of the pipeline (everything but the network) measured here with ONNX Runtime on one input
    (minimum of the repeats); each node runs them in its own process, on its own core.
The GPU time is a roofline estimate, ``max(FLOPs / (eff_c * peak_fp16), bytes / (eff_m * bandwidth)) + layers *
launch``; the CPU parts are scaled by the ratio of this machine's core to a Cortex-A78AE core. The efficiencies,
launch cost and CPU ratio are assumptions stated in ASSUMPTIONS (small convolutional networks rarely reach more
than a fraction of the tensor-core peak); published figures are in MODULES. The result is an estimate to plan
with, not a measurement: verify on the robot with ``bench_nodes.py --providers tensorrt``.

Run: ``python bench/bench_jetson_budget.py [--repeat N]`` (writes bench/results/jetson_budget.json).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from _common import print_table, write_results
from glassbox.capabilities import all_capabilities
from glassbox.models.card import load_card
from glassbox.stages.build import build_pipeline, card_path_for

# NVIDIA Jetson Orin module data sheets / AGX Orin technical brief: GPU tensor-core INT8 sparse TOPS (fp16 dense
# is a quarter of it on Ampere), LPDDR5 bandwidth, CPU cores.
MODULES = {
    "Orin NX 16GB": {"int8_sparse_tops": 60.0, "bandwidth_gbs": 102.4, "cpu": "8x Cortex-A78AE 2.0 GHz"},
    "AGX Orin 64GB": {"int8_sparse_tops": 170.0, "bandwidth_gbs": 204.8, "cpu": "12x Cortex-A78AE 2.2 GHz"},
}
ASSUMPTIONS = {
    "compute_efficiency": 0.25,    # share of the fp16 tensor-core peak reached by small convolutions
    "memory_efficiency": 0.6,      # share of the DRAM bandwidth reached by activation traffic
    "launch_us_per_layer": 8.0,    # kernel launch and scheduling per fused layer
    "cpu_slowdown": 2.0,           # a Cortex-A78AE core vs one core of the x86 machine the CPU parts ran on
}
NOMINAL_HZ = {"lidar": 10.0, "refiner": 15.0, "segmentation": 15.0, "fusion": 15.0}
LAUNCHING = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
             nn.Upsample)


def network_work(model: nn.Module, inputs: list[torch.Tensor]) -> dict[str, float]:
    """FLOPs, fp16 activation bytes (write + read of every leaf output) and launching layers of one forward."""
    out_elems, layers = [0], [0]

    def hook(module, _inp, out):
        tensors = out if isinstance(out, (tuple, list)) else [out]
        out_elems[0] += sum(t.numel() for t in tensors if isinstance(t, torch.Tensor))
        layers[0] += isinstance(module, LAUNCHING)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.forward_head(model.forward_features(*inputs))
    for h in handles:
        h.remove()
    return {"gflops": counter.get_total_flops() / 1e9, "activation_mb": out_elems[0] * 2 * 2 / 1e6,
            "layers": layers[0]}


def estimate_ms(work: dict[str, float], module: dict[str, float]) -> float:
    peak = module["int8_sparse_tops"] / 4 * 1e12
    compute = work["gflops"] * 1e9 / (ASSUMPTIONS["compute_efficiency"] * peak)
    memory = work["activation_mb"] * 1e6 / (ASSUMPTIONS["memory_efficiency"] * module["bandwidth_gbs"] * 1e9)
    return (max(compute, memory) + work["layers"] * ASSUMPTIONS["launch_us_per_layer"] * 1e-6) * 1e3


def cpu_parts_ms(cap: str, repeat: int) -> tuple[float, float, list[tuple[int, ...]]]:
    """(network, everything else) ms (minimum of the repeats) of the shipped ONNX Runtime pipeline here on one synthetic input
    (an HDL-64 sweep, a 640 x 512 camera pair), and the shapes the pipeline fed its network."""
    import bench_nodes
    inputs = bench_nodes.make_inputs()
    pipeline, _ = build_pipeline(cap, card_path_for(cap))
    shapes, run = [], pipeline.runtime.run

    def recording_run(feed, *a, **kw):
        shapes[:] = [tuple(np.shape(v)) for v in feed.values()]
        return run(feed, *a, **kw)
    pipeline.runtime.run = recording_run
    call = {"lidar": lambda: pipeline(inputs["points"], inputs["ring"]),
            "fusion": lambda: pipeline(inputs["rgb"], inputs["thermal"])}.get(cap, lambda: pipeline(inputs["rgb"]))
    call()
    totals, nets = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = call()
        totals.append((time.perf_counter() - t0) * 1e3)
        nets.append(float(getattr(result, "timings_ms", {}).get("network", np.nan)))
    total, net = float(np.min(totals)), float(np.nanmin(nets))     # min: the machine is shared and noisy
    return net, max(total - net, 0.0), shapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    rows = []
    for cap in all_capabilities():
        card_path = card_path_for(cap.name)
        card = load_card(card_path)
        net_cpu, rest_cpu, shapes = cpu_parts_ms(cap.name, args.repeat)
        torch_pipe, _ = build_pipeline(cap.name, card_path, backend="torch")
        work = network_work(torch_pipe.runtime.model, [torch.zeros(s) for s in shapes])
        period = 1e3 / NOMINAL_HZ[cap.name]
        row = {"node": cap.node, "model": card.name, "input": "x".join(map(str, shapes[0])),
               "gflops": round(work["gflops"], 3), "activation_mb": round(work["activation_mb"], 1),
               "layers": work["layers"], "cpu_network_ms": round(net_cpu, 1), "cpu_other_ms": round(rest_cpu, 1)}
        for name, module in MODULES.items():
            gpu = estimate_ms(work, module)
            total = gpu + rest_cpu * ASSUMPTIONS["cpu_slowdown"]
            key = name.split()[0] + "_" + name.split()[1]
            row[f"{key}_gpu_ms"] = round(gpu, 2)
            row[f"{key}_node_ms"] = round(total, 1)
            row[f"{key}_share_of_period"] = round(total / period, 2)
        rows.append(row)
    columns = ["node", "input", "gflops", "activation_mb", "layers", "cpu_network_ms", "cpu_other_ms",
               "Orin_NX_gpu_ms", "Orin_NX_node_ms", "AGX_Orin_gpu_ms", "AGX_Orin_node_ms"]
    print_table(rows, columns)
    for name in MODULES:
        key = name.split()[0] + "_" + name.split()[1]
        gpu_busy = sum(r[f"{key}_gpu_ms"] * NOMINAL_HZ[c.name] / 1e3 for r, c in zip(rows, all_capabilities()))
        worst = max(rows, key=lambda r: r[f"{key}_share_of_period"])
        print(f"{name}: GPU busy {gpu_busy:.1%} with all four nodes at their nominal rates; the tightest node, "
              f"{worst['node']}, needs {worst[f'{key}_share_of_period']:.0%} of its sensor period")
    write_results("jetson_budget", rows, units={"gflops": "1e9 FLOPs per frame", "activation_mb": "MB fp16",
                                                "*_ms": "milliseconds"},
                  notes={"modules": MODULES, "assumptions": ASSUMPTIONS, "nominal_hz": NOMINAL_HZ,
                         "method": __doc__.split("\n\n")[1]})


if __name__ == "__main__":
    main()
