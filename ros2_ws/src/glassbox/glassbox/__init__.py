"""glassbox: interpretable perception for ROS 2 robots (ROS-free core).

Sub-packages: ``entropy`` (per-layer differential entropy, probes, Eloss), ``sim`` (synthetic multi-sensor
world), ``datasets`` (KITTI, COCO-style RGB-thermal, label PNGs), ``lidar`` (range-image projection, SPI
detector), ``vision`` (refiner, BiSeNet, GEM), ``metrics``, ``pipelines``, ``export``, ``bag`` (rosbags I/O,
replay, report). This package never imports rclpy or generated ROS messages.
"""

__version__ = "0.1.0"
