"""The whole suite: `ros2 launch glassbox_bringup perception.launch.py`.

Starts the LiDAR detector, the image refiner, segmentation (on refined images), RGB-thermal fusion and the
entropy monitor (watching every started node's entropy topic against the shipped model cards).
Arguments:
  namespace (glassbox), nodes (comma-separated subset of the capabilities in glassbox.capabilities and monitor:
  lidar,refiner,segmentation,fusion,monitor; default all),
  backend (onnxruntime|torch), providers (comma-separated, e.g. tensorrt,cuda,cpu), device (torch backend),
  use_sim_time, models_dir (folder of model cards; default the installed share/glassbox_bringup/models),
  points_topic, camera_topic, thermal_topic (the robot's sensor topics), segment_refined (true|false).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _node_specs() -> list[dict]:
    """Every capability's node from the capability record, and the monitor (``glassbox.capabilities``)."""
    from glassbox.capabilities import node_specs
    return node_specs()


def _setup(context):
    share = Path(get_package_share_directory("glassbox_bringup"))
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    ns = arg("namespace")
    models = Path(arg("models_dir") or share / "models")
    wanted = {n.strip() for n in arg("nodes").split(",") if n.strip()}
    common = {"use_sim_time": arg("use_sim_time") == "true"}
    infer = {"backend": arg("backend"), "device": arg("device"),
             "providers": [p for p in arg("providers").split(",") if p]}
    specs = _node_specs()
    unknown = sorted(wanted - {s["key"] for s in specs})
    if unknown:
        raise ValueError(f"nodes: unknown node '{unknown[0]}' (known: {', '.join(s['key'] for s in specs)})")
    actions, entropy_topics, cards = [], [], []
    for spec in specs:
        if spec["key"] not in wanted or spec["key"] == "monitor":
            continue
        remaps = [(inp, arg(topic_arg)) for inp, topic_arg in spec["remappings"]]
        if spec["key"] == "segmentation" and arg("segment_refined") == "true" and "refiner" in wanted:
            remaps = [("image", f"/{ns}/refiner/image_refined")]
        card = str(models / spec["card"])
        actions.append(Node(package=spec["package"], executable=spec["executable"], name=spec["name"],
                            namespace=f"{ns}/{spec['sub_namespace']}", output="screen",
                            parameters=[str(share / "config" / spec["config"]), common, infer, {"model_card": card}],
                            remappings=remaps))
        entropy_topics.append(f"{spec['sub_namespace']}/entropy")
        cards.append(card)
    if "monitor" in wanted and entropy_topics:
        spec = specs[-1]
        actions.append(Node(package=spec["package"], executable=spec["executable"], name=spec["name"], namespace=ns,
                            output="screen",
                            parameters=[str(share / "config" / spec["config"]), common,
                                        {"entropy_topics": entropy_topics, "reference_files": cards}]))
    return actions


def generate_launch_description():
    every_node = ",".join(spec["key"] for spec in _node_specs())
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="glassbox"),
        DeclareLaunchArgument("nodes", default_value=every_node),
        DeclareLaunchArgument("backend", default_value="onnxruntime"),
        DeclareLaunchArgument("providers", default_value="cpu"),
        DeclareLaunchArgument("device", default_value="cpu"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("models_dir", default_value=""),
        DeclareLaunchArgument("points_topic", default_value="/sensors/lidar/points"),
        DeclareLaunchArgument("camera_topic", default_value="/sensors/camera/rgb/image_raw"),
        DeclareLaunchArgument("thermal_topic", default_value="/sensors/camera/thermal/image_raw"),
        DeclareLaunchArgument("segment_refined", default_value="true"),
        OpaqueFunction(function=_setup),
    ])
