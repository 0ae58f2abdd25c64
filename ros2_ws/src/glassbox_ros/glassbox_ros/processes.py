"""Node executables as processes: found like `ros2 run` finds them, started with parameters and remappings,
logged to a file, and always stopped (SIGINT for a clean shutdown, then SIGKILL of the process group).

Used by the live bag replay and by the ROS test harness.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def find_executable(package: str, executable: str) -> Path:
    """``<prefix>/lib/<package>/<executable>`` for the first prefix of AMENT_PREFIX_PATH that has it."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(":"):
        path = Path(prefix) / "lib" / package / executable
        if prefix and path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"executable '{executable}' of package '{package}' not found in AMENT_PREFIX_PATH; "
                            "is the workspace built and sourced (make test does both)?")


class NodeProcess:
    """A node executable running as its own process."""

    def __init__(self, executable: str, *, package: str = "glassbox_ros", params_file: str | Path | None = None,
                 params: Mapping[str, Any] | None = None, remaps: Mapping[str, str] | None = None,
                 namespace: str | None = None, name: str | None = None, log_dir: Path | None = None):
        cmd = [str(find_executable(package, executable)), "--ros-args"]
        if params_file:
            cmd += ["--params-file", str(params_file)]
        for key, value in (params or {}).items():
            cmd += ["-p", f"{key}:={_param_text(value)}"]
        for src, dst in (remaps or {}).items():
            cmd += ["-r", f"{src}:={dst}"]
        if namespace:
            cmd += ["-r", f"__ns:={namespace}"]
        if name:
            cmd += ["-r", f"__node:={name}"]
        self.cmd = cmd
        self.log_path = (log_dir or Path("/tmp")) / f"{executable}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (clean shutdown), then SIGKILL of the whole process group if it does not exit."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)
