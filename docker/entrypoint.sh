#!/usr/bin/env bash
# Source ROS 2 and the glassbox workspace, then run the given command (default: the suite's launch file).
set -e
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO}/setup.bash"
# shellcheck disable=SC1091
source "${GLASSBOX_WS}/ros2_ws/install/setup.bash"
exec "$@"
