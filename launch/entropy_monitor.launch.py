"""Start the entropy monitor alone: `ros2 launch glassbox_bringup entropy_monitor.launch.py`.

Arguments: namespace (default glassbox), use_sim_time, reference_files (comma-separated model cards or
reference tables; default: the cards of the shipped models).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from ament_index_python.packages import get_package_share_directory
from pathlib import Path

# Static table read by the tests: package, executable, parameter file (in config/) of each node started here.
NODES = [
    {"package": "glassbox_ros", "executable": "entropy_monitor_node", "name": "entropy_monitor",
     "config": "entropy_monitor.yaml", "remappings": []},
]


def _setup(context):
    share = Path(get_package_share_directory("glassbox_bringup"))
    refs = LaunchConfiguration("reference_files").perform(context)
    files = [f for f in refs.split(",") if f] or sorted(str(p) for p in (share / "models").glob("*.card.yaml"))
    spec = NODES[0]
    return [Node(package=spec["package"], executable=spec["executable"], name=spec["name"],
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[str(share / "config" / spec["config"]),
                             {"use_sim_time": LaunchConfiguration("use_sim_time"), "reference_files": files or [""]}],
                 remappings=spec["remappings"])]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="glassbox"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("reference_files", default_value=""),
        OpaqueFunction(function=_setup),
    ])
