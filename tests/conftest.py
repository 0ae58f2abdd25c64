"""Session-wide test settings: DDS stays on loopback, with a domain id of this run's own."""
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

# Set before any rclpy import, in this process and (inherited) in every node process a test starts.
# DDS stays on this machine: the Fast DDS profile below allows only shared memory and UDP on 127.0.0.1, and
# ROS_LOCALHOST_ONLY keeps discovery local. ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is deliberately unset: with
# it, rmw_fastrtps replaces the profile's transports with its own, and best-effort images and clouds of a few
# hundred kB are then lost (seen with the PyPI Kilted wheels).
os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# Point clouds and images of a MB and more: shared memory with large segments, UDP on loopback only
# (see the profile's comment for why the defaults drop best-effort scans). Humble's Fast DDS reads the same file
# from FASTRTPS_DEFAULT_PROFILES_FILE.
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      str(Path(__file__).resolve().parents[1] / "config/dds/fastdds_local_large_data.xml"))
