"""Session-wide test settings: DDS stays on loopback, with a domain id of this run's own."""
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

# Set before any rclpy import, in this process and (inherited) in every node process a test starts.
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")                    # Humble's name
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and newer
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# Point clouds and images of a MB and more: shared memory with large segments, UDP on loopback only
# (see the profile's comment for why the defaults drop best-effort scans).
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE",
                      str(Path(__file__).resolve().parents[1] / "config/dds/fastdds_local_large_data.xml"))
