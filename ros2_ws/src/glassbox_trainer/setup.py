"""glassbox_trainer: offline training, distillation and export of the glassbox models."""
from setuptools import find_packages, setup

setup(
    name="glassbox_trainer",
    version="0.1.0",
    description="Offline trainer for glassbox: Eloss, distillation, DDP, checkpoints and ONNX export",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/glassbox_trainer"]),
        ("share/glassbox_trainer", ["package.xml"]),
    ],
    install_requires=["glassbox"],
    zip_safe=False,
    entry_points={"console_scripts": ["glassbox-train = glassbox_trainer.cli:main"]},
)
