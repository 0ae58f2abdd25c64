#!/usr/bin/env bash
# One-time (and cheap to re-run) set-up of the development environment:
#   1. Debian's libusb-1.0-0 (Open3D needs it),
#   2. the .venv with the pinned dependencies of requirements.txt (torch 2.13.0 CPU, ROS 2 wheels, colcon, ...),
#   3. the CMake path fixes the ROS 2 wheels need,
#   4. the ROS 2 launch system (launch, launch_ros, launch_testing) from the upstream-built wheels in
#      $GLASSBOX_ROS_WHEELS (default ../shared/wheels) when the machine has no ROS launch, so that launch files
#      are tested by the real launch system,
#   5. `colcon build` of the workspace (and of the vision_msgs test stand-in when no vision_msgs is installed,
#      and of composition_interfaces from $GLASSBOX_ROS_SRC (default ../shared/ros_src), which launch_ros needs).
# Each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# pip install, quiet, without the index-location warnings some machines print for every package
pip_install() {
  "$PY" -m pip install -q "$@" 2>&1 | { grep -v 'is neither a file nor a directory' || true; }
  return "${PIPESTATUS[0]}"
}

# 1. System library for Open3D.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian package libusb-1.0-0 (needed by Open3D)"
    apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null; }
  else
    echo "error: Open3D needs libusb-1.0-0; run: sudo apt-get install -y libusb-1.0-0" >&2; exit 1
  fi
fi

# 2. Virtual environment with pinned dependencies.
[ -x "$PY" ] || { log "creating $VENV"; python3 -m venv "$VENV"; }
req_hash=$(cat requirements.txt ros2_ws/src/glassbox/setup.py ros2_ws/src/glassbox_trainer/setup.py | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.requirements-hash" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned dependencies (first run: a few minutes)"
  # torch first, alone, so that no other package can pull a CUDA build of it.
  pip_install "setuptools==79.0.1" "torch==2.13.0"
  pip_install -r requirements.txt
  pip_install --no-deps -e ros2_ws/src/glassbox -e ros2_ws/src/glassbox_trainer
  echo "$req_hash" > "$VENV/.requirements-hash"
fi

# 3. The ROS 2 wheels' CMake exports name the include folders of the machine they were built on; point them
#    at this venv's Python and numpy instead (idempotent).
py_inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$PY" -c 'import numpy; print(numpy.get_include())')
{ grep -rlE '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
done

# 4. The real launch system, when no ROS install provides it (its Python dependencies are in requirements.txt).
WHEELS=${GLASSBOX_ROS_WHEELS:-$ROOT/../shared/wheels}
ROS_SRC=${GLASSBOX_ROS_SRC:-$ROOT/../shared/ros_src}
if [ -z "$(ls -d /opt/ros/*/share/launch_ros 2>/dev/null)" ] && ls "$WHEELS"/launch_ros-*.whl >/dev/null 2>&1; then
  if ! "$PY" -m pip show -q launch-ros >/dev/null 2>&1; then
    log "installing the ROS 2 launch system from $WHEELS"
    pip_install --no-deps "$WHEELS"/*.whl
  fi
fi

# 5. colcon build (skipped when no build input changed).
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
extra_paths=()
if ! "$PY" -c 'import vision_msgs' 2>/dev/null && [ -z "$(ls -d /opt/ros/*/share/vision_msgs 2>/dev/null)" ]; then
  extra_paths=(tests/support/vision_msgs)
elif [ -d ros2_ws/install/vision_msgs ]; then
  extra_paths=(tests/support/vision_msgs)   # the stand-in was built before: keep it current
fi
if [ -z "$(ls -d /opt/ros/*/share/composition_interfaces 2>/dev/null)" ] && [ -d "$ROS_SRC/composition_interfaces" ]; then
  extra_paths+=("$(cd "$ROS_SRC" && pwd)")
fi
build_hash=$( (find ros2_ws/src "${extra_paths[@]}" launch config models \
                 \( -name package.xml -o -name CMakeLists.txt -o -name setup.py -o -name setup.cfg -o -name '*.msg' \
                    -o -path 'launch/*' -o -path 'config/*' -o -path 'models/*' \) -type f -print0 2>/dev/null \
               | sort -z | xargs -0 sha256sum; echo "${extra_paths[*]}") | sha256sum | cut -c1-16)
if [ "$(cat ros2_ws/.build-hash 2>/dev/null)" != "$build_hash" ] || [ ! -f ros2_ws/install/local_setup.bash ]; then
  log "colcon build${extra_paths[*]:+ (with ${extra_paths[*]})}"
  base_paths=()
  for p in "${extra_paths[@]}"; do case $p in /*) base_paths+=("$p") ;; *) base_paths+=("../$p") ;; esac; done
  ( cd ros2_ws && PATH=$VENV/bin:$PATH "$VENV/bin/colcon" --log-base log build --symlink-install \
      --base-paths src "${base_paths[@]}" \
      --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF --no-warn-unused-cli \
      --event-handlers console_direct- ) > ros2_ws/build.log 2>&1 \
    || { tail -50 ros2_ws/build.log; echo "error: colcon build failed, full log in ros2_ws/build.log" >&2; exit 1; }
  echo "$build_hash" > ros2_ws/.build-hash
fi
log "ready"
