"""Fleet fixtures: untrained model cards and a few one-second synthetic drives (tiny cameras, 16 beams)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fleet_cards(tmp_path_factory) -> dict[str, Path]:
    from support_models import make_camera_card, make_lidar_card
    folder = tmp_path_factory.mktemp("fleet_cards")
    return {"lidar": make_lidar_card(folder, 16, 512), "segmentation": make_camera_card("segmentation", folder)}


@pytest.fixture(scope="session")
def fleet_config(fleet_cards):
    """ReplayConfig(**kw) with the test cards, running LiDAR detection and segmentation unless told otherwise:
    both have ground truth in the drives, and they keep the tests short."""
    from glassbox.bag.replay import ReplayConfig

    def make(**kw):
        kw.setdefault("capabilities", ("lidar", "segmentation"))
        return ReplayConfig(lidar_card=str(fleet_cards["lidar"]), segmentation_card=str(fleet_cards["segmentation"]),
                            **kw)
    return make


@pytest.fixture(scope="session")
def drives(tmp_path_factory) -> dict[str, Path]:
    """Three good drives and a truncated one (its mcap cut to a third: no summary, no end magic)."""
    from glassbox.sim import rgb_camera, thermal_camera
    from glassbox.sim.drive import DriveConfig, write_drive
    folder = tmp_path_factory.mktemp("fleet_bags")
    out = {}
    for seed in range(3):
        path = folder / f"drive{seed}.mcap"
        write_drive(path, DriveConfig(seconds=1.0, seed=seed, lidar="vlp16", rgb=rgb_camera(width=64, height=48),
                                      thermal=thermal_camera(width=64, height=48), workers=1,
                                      segments=("day", "night")))
        out[path.stem] = path
    data = out["drive0"].read_bytes()
    bad = folder / "broken.mcap"
    bad.write_bytes(data[: len(data) // 3])
    out["broken"] = bad
    return out
