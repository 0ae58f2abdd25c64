"""Session-wide test settings: DDS stays on loopback, with a domain id of this run's own."""
import os
import random

# Set before any rclpy import, in this process and (inherited) in every node process a test starts.
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")                    # Humble's name
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and newer
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
