"""The GPU execution providers' node parameters reach the runtime's provider options (what ONNX Runtime's CUDA
and TensorRT providers are started with), checked on a configured node in a process of its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
import rclpy
from glassbox_ros.lidar_detector_node import LidarDetectorNode
rclpy.init(args=sys.argv[1:])
node = LidarDetectorNode()
node.trigger_configure()
opts = node.stage.pipeline.cfg.provider_options
print(json.dumps({"tensorrt": opts.for_provider("tensorrt"), "cuda": opts.for_provider("cuda")}))
node.destroy_node()
rclpy.shutdown()
"""


def _options(card, *params: str) -> dict:
    args = ["--ros-args", "-p", f"model_card:={card}", *[a for p in params for a in ("-p", p)]]
    env = {**os.environ, "ROS_DOMAIN_ID": str(170 + os.getpid() % 30)}
    out = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, check=True, capture_output=True, text=True,
                         timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tensorrt_and_cuda_options_follow_the_node_parameters(model_cards):
    default = _options(model_cards["lidar"])
    assert default["tensorrt"] == {"device_id": 0, "trt_max_workspace_size": 1 << 30, "trt_fp16_enable": True,
                                   "trt_engine_cache_enable": True,
                                   "trt_engine_cache_path": os.path.expanduser("~/.cache/glassbox/trt")}
    assert default["cuda"] == {"device_id": 0}
    set_ = _options(model_cards["lidar"], "device_id:=1", "tensorrt.fp16:=false", "tensorrt.max_workspace_mb:=256",
                    "tensorrt.engine_cache_dir:=/tmp/engines")
    assert set_["tensorrt"] == {"device_id": 1, "trt_max_workspace_size": 256 << 20, "trt_fp16_enable": False,
                                "trt_engine_cache_enable": True, "trt_engine_cache_path": "/tmp/engines"}
    assert set_["cuda"] == {"device_id": 1}
    no_cache = _options(model_cards["lidar"], "tensorrt.engine_cache_dir:=''")
    assert no_cache["tensorrt"]["trt_engine_cache_enable"] is False
    assert "trt_engine_cache_path" not in no_cache["tensorrt"]
