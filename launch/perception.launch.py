"""The whole suite: `ros2 launch glassbox_bringup perception.launch.py`.

Starts the LiDAR detector, the image refiner, segmentation (on refined images), RGB-thermal fusion and the
entropy monitor (watching every started node's entropy topic against the shipped model cards).
Arguments:
  namespace (glassbox), nodes (comma-separated subset of the capabilities in glassbox.capabilities and monitor:
  lidar,refiner,segmentation,fusion,monitor; default all),
  backend (onnxruntime|torch), providers (comma-separated, e.g. tensorrt,cuda,cpu), device (torch backend),
  use_sim_time, models_dir (folder of model cards; default the installed share/glassbox_bringup/models),
  points_topic, camera_topic, thermal_topic (the robot's sensor topics), segment_refined (true|false),
  dds_profile (Fast DDS XML profile applied when the environment names none; default the large-data profile
  config/dds/fastdds_large_data.xml; empty = leave the environment alone),
  lifecycle (true|false, default false: the perception nodes start unconfigured as managed nodes and wait for
  `ros2 lifecycle set <node> configure` / `activate`; the entropy monitor is not a managed node).
"""
import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
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
             "providers": [p for p in arg("providers").split(",") if p], "lifecycle": arg("lifecycle") == "true"}
    specs = _node_specs()
    unknown = sorted(wanted - {s["key"] for s in specs})
    if unknown:
        raise ValueError(f"nodes: unknown node '{unknown[0]}' (known: {', '.join(s['key'] for s in specs)})")
    actions, entropy_topics, cards = _dds_profile(arg("dds_profile"), share), [], []
    for spec in specs:
        if spec["key"] not in wanted or spec["key"] == "monitor":
            continue
        remaps = [(inp, arg(topic_arg)) for inp, topic_arg in spec["remappings"]]
        if spec["key"] == "segmentation" and arg("segment_refined") == "true" and "refiner" in wanted:
            remaps = [(inp, f"/{ns}/refiner/image_refined") for inp, topic_arg in spec["remappings"]
                      if topic_arg == "camera_topic"]
        card = str(models / spec["card"])
        if not Path(card).is_file():
            raise FileNotFoundError(f"{spec['executable']}: model card {card} not found (models_dir:={models})")
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


def _dds_profile(profile: str, share: Path) -> list:
    """Point Fast DDS at ``profile`` unless the environment already names a profile (Humble reads the
    FASTRTPS_ variable, Jazzy and later the FASTDDS_ one)."""
    keys = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
    if not profile or any(os.environ.get(k) for k in keys):
        return []
    path = Path(profile) if Path(profile).is_absolute() else share / profile
    if not path.is_file():
        raise FileNotFoundError(f"dds_profile: {path} not found")
    return [LogInfo(msg=f"Fast DDS profile: {path}"), *[SetEnvironmentVariable(k, str(path)) for k in keys]]


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
        DeclareLaunchArgument("dds_profile", default_value="config/dds/fastdds_large_data.xml"),
        DeclareLaunchArgument("lifecycle", default_value="false"),
        OpaqueFunction(function=_setup),
    ])
