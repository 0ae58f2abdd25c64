"""Start fusion_node alone: `ros2 launch glassbox_bringup fusion.launch.py`.

It is perception.launch.py with `nodes:=fusion`, so it takes the same arguments (namespace, backend, providers,
device, use_sim_time, models_dir, lifecycle and the sensor topics), e.g.
`ros2 launch glassbox_bringup fusion.launch.py thermal_topic:=/flir/image_raw`.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

# Read by the tests: which launch file this one includes, and which of its nodes it starts.
INCLUDES = {"launch": "perception.launch.py", "nodes": "fusion"}


def generate_launch_description():
    share = Path(get_package_share_directory("glassbox_bringup"))
    return LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / INCLUDES["launch"])),
        launch_arguments={"nodes": INCLUDES["nodes"]}.items())])
