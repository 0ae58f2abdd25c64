"""glassbox core: ROS-free perception, entropy and simulation library.

Installable with pip (``pip install -e ros2_ws/src/glassbox``) and buildable by colcon as an ament_python package.
"""
from setuptools import find_packages, setup

setup(
    name="glassbox",
    version="0.1.0",
    description="Interpretable perception: models, per-layer entropy, synthetic world and bag replay (ROS-free core)",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/glassbox"]),
        ("share/glassbox", ["package.xml"]),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "pyyaml"],
    extras_require={"fleet": ["ray[default]>=2.40"]},   # `glassbox replay --cluster`: many bags as Ray tasks
    zip_safe=False,
    entry_points={"console_scripts": ["glassbox = glassbox.cli:main"]},
)
