"""Start lidar_detector_node alone: `ros2 launch glassbox_bringup lidar_detector.launch.py`.

Arguments: namespace (default glassbox), model_card, backend, providers (comma-separated), device, use_sim_time,
and one `<input>_topic` per input (default: the synthetic drive's sensor topics), e.g.
`ros2 launch glassbox_bringup lidar_detector.launch.py points_topic:=/ouster/points`.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Static table read by the tests: package, executable, parameter file (in config/) of each node started here.
NODES = [
    {"package": "glassbox_ros", "executable": "lidar_detector_node", "name": "lidar_detector", "sub_namespace": "lidar",
     "config": "lidar_detector.yaml", "remappings": [("points", "/sensors/lidar/points")]},
]


def _setup(context):
    share = Path(get_package_share_directory("glassbox_bringup"))
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {"use_sim_time": arg("use_sim_time") == "true", "backend": arg("backend"), "device": arg("device"),
                 "providers": [p for p in arg("providers").split(",") if p]}
    if arg("model_card"):
        overrides["model_card"] = arg("model_card")
    spec = NODES[0]
    remaps = [(name, arg(f"{name}_topic")) for name, _ in spec["remappings"]]
    return [Node(package=spec["package"], executable=spec["executable"], name=spec["name"],
                 namespace=f"{arg('namespace')}/{spec['sub_namespace']}", output="screen",
                 parameters=[str(share / "config" / spec["config"]), overrides], remappings=remaps)]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="glassbox"),
        DeclareLaunchArgument("model_card", default_value=""),
        DeclareLaunchArgument("backend", default_value="onnxruntime"),
        DeclareLaunchArgument("providers", default_value="cpu"),
        DeclareLaunchArgument("device", default_value="cpu"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        *[DeclareLaunchArgument(f"{name}_topic", default_value=topic) for name, topic in NODES[0]["remappings"]],
        OpaqueFunction(function=_setup),
    ])
