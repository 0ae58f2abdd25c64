"""ROS 2 bag I/O with rosbags: typestore, message builders, replay and report (ROS-free)."""
