"""Fleet-scale evaluation: many bags (or time chunks of long ones) replayed as Ray tasks, one fleet report.

Core (no rclpy); Ray is optional (``pip install glassbox[fleet]``): without it the fleet runs in this process.
"""
