"""A rosbags typestore that knows every message type glassbox reads or writes.

Standard ROS 2 types come from rosbags' built-in store; ``glassbox_msgs`` and ``vision_msgs`` are registered
from their ``.msg`` text, found (first hit wins) in:

1. ``$GLASSBOX_MSG_PATH`` (colon-separated folders holding ``<package>/msg/*.msg``),
2. every ``share/<package>/msg`` folder of ``$AMENT_PREFIX_PATH`` (a sourced ROS 2 install or workspace),
3. this repository's sources: ``ros2_ws/src/glassbox_msgs/msg`` and ``tests/support/vision_msgs/msg``.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

EXTRA_PACKAGES = ("vision_msgs", "glassbox_msgs")   # registration order: glassbox_msgs needs nothing of vision_msgs
_REPO = Path(__file__).resolve().parents[5]
_REPO_MSG_DIRS = {"glassbox_msgs": _REPO / "ros2_ws/src/glassbox_msgs/msg",
                  "vision_msgs": _REPO / "tests/support/vision_msgs/msg"}


class TypestoreError(RuntimeError):
    """A message package's definitions could not be found."""


def find_msg_dir(package: str) -> Path:
    """The folder holding ``package``'s ``.msg`` files (see the module docstring for the search order)."""
    candidates = [Path(p) / package / "msg" for p in os.environ.get("GLASSBOX_MSG_PATH", "").split(":") if p]
    candidates += [Path(p) / "share" / package / "msg" for p in os.environ.get("AMENT_PREFIX_PATH", "").split(":")
                   if p]
    candidates.append(_REPO_MSG_DIRS.get(package, Path("/nonexistent")))
    for c in candidates:
        if c.is_dir() and any(c.glob("*.msg")):
            return c
    raise TypestoreError(f"no .msg definitions found for '{package}' (looked in: {', '.join(map(str, candidates))})")


@lru_cache(maxsize=None)
def make_typestore(distro: str = "humble") -> Any:
    """Typestore of ``distro`` ("humble", "jazzy", ...) plus glassbox_msgs and vision_msgs. Cached."""
    store = get_typestore(getattr(Stores, f"ROS2_{distro.upper()}"))
    types: dict = {}
    for package in EXTRA_PACKAGES:
        for path in sorted(find_msg_dir(package).glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    store.register(types)
    return store
