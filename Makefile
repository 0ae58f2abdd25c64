# glassbox — the two commands:  make demo   and   make test
# Both set up everything they need on first use (venv, pinned dependencies, colcon build); re-runs are fast.
SHELL := /bin/bash
VENV := .venv
ROS_ENV := source ros2_ws/install/local_setup.bash && export PATH=$(CURDIR)/$(VENV)/bin:$$PATH
PYTEST_ARGS ?=

.PHONY: setup test test-core demo bench clean models-lidar

setup:
	@bash scripts/setup.sh

test: setup
	@$(ROS_ENV) && python -m pytest $(PYTEST_ARGS)

test-core: setup
	@$(ROS_ENV) && python -m pytest tests/core $(PYTEST_ARGS)

demo: setup
	@$(ROS_ENV) && glassbox demo $(DEMO_ARGS)

bench: setup
	@$(ROS_ENV) && for b in bench/bench_*.py; do echo "== $$b"; python $$b || exit 1; done

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log ros2_ws/.build-hash

# Rebuild every shipped LiDAR card from scratch (hours on a CPU; each step resumes where it stopped):
# docs/lidar.md, "Rebuilding the LiDAR cards".
models-lidar: setup
	@$(ROS_ENV) && export OMP_NUM_THREADS=1 && \
	glassbox-train --config config/train/lidar_hdl64.yaml --out runs/lidar_hdl64 --resume && \
	glassbox-train --config config/train/lidar_hdl64_head.yaml --section variational --out runs/lidar_hdl64_vnn \
	    --resume --export models/ && \
	glassbox-train --config config/train/lidar_hdl32.yaml --out runs/lidar_hdl32 --resume --export models/
