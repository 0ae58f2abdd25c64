"""Bag test fixtures: untrained model cards for every capability and a small, unusual but valid bag."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cards(tmp_path_factory) -> dict[str, Path]:
    from support_models import make_camera_card, make_lidar_card
    folder = tmp_path_factory.mktemp("cards")
    return {"lidar": make_lidar_card(folder, 16, 512),
            **{cap: make_camera_card(cap, folder) for cap in ("refiner", "segmentation", "fusion")}}


def replay_config(cards: dict[str, Path], **kw):
    """Replay settings with the test cards; the test bags hold one frame per second, so a sensor counts as
    silent (fusion falls back to one camera) only after 2 s of bag time."""
    from glassbox.bag.replay import ReplayConfig
    kw.setdefault("sensor_timeout_s", 2.0)
    return ReplayConfig(lidar_card=str(cards["lidar"]), refiner_card=str(cards["refiner"]),
                        segmentation_card=str(cards["segmentation"]), fusion_card=str(cards["fusion"]), **kw)
