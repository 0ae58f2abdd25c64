"""glassbox_ros: thin rclpy nodes around the glassbox core pipelines."""
from setuptools import find_packages, setup

NODES = ["entropy_monitor_node", "lidar_detector_node", "image_refiner_node", "segmentation_node",
         "fusion_node"]

setup(
    name="glassbox_ros",
    version="0.1.0",
    description="ROS 2 nodes of the glassbox perception suite",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/glassbox_ros"]),
        ("share/glassbox_ros", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    entry_points={"console_scripts": [f"{n} = glassbox_ros.{n}:main" for n in NODES]},
)
