"""`glassbox profile` end to end on the shipped LiDAR model: record on nominal drives, load it, OK on another
nominal street, WARN/ERROR on a drive with an injected fault; a profile of another model file is refused."""
from __future__ import annotations

import pytest
import yaml

from glassbox.bag.replay import ReplayConfig, replay
from glassbox.cli import main
from glassbox.models.card import load_card
from glassbox.monitor import Level, ReferenceProfileError, load_references
from glassbox.sim.camera import rgb_camera, thermal_camera
from glassbox.sim.drive import DriveConfig, write_drive
from glassbox.sim.scene import SceneConfig
from glassbox.stages.build import card_path_for

CFG = ReplayConfig(capabilities=("lidar",))


def _drive(folder, seed, faults=(), seconds=1.5, start_m=10.0):
    """A daylight drive; ``start_m`` moves the start along the street (a stretch the profile has not seen)."""
    return write_drive(folder / f"drive{seed}_{start_m:g}{'_fault' if faults else ''}.mcap", DriveConfig(
        seconds=seconds, seed=seed, segments=("day",), scene=SceneConfig(ego_start_m=start_m),
        rgb=rgb_camera(width=64, height=48),
        thermal=thermal_camera(width=64, height=48), workers=1, faults=faults)).path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    if not card_path_for("lidar").is_file():
        pytest.skip("shipped LiDAR model missing")
    folder = tmp_path_factory.mktemp("profile")
    bags = [_drive(folder, s) for s in (11, 12)]
    out = folder / "reference.yaml"
    assert main(["profile", *map(str, bags), "--out", str(out), "--capabilities", "lidar"]) == 0
    return folder, out


def _levels(folder, bag, profile, name):
    from dataclasses import replace
    result = replay(bag, folder / name, replace(CFG, reference_profile=str(profile)))
    return [lv for _, lv, _ in result.monitor["spi_lidar"]], result


def test_profile_file_holds_frames_sensors_card_hash_and_robust_spreads(recorded):
    _, out = recorded
    entry = yaml.safe_load(out.read_text())["models"]["spi_lidar"]
    card = load_card(card_path_for("lidar"))
    assert entry["card_sha256"] == card.sha256 and entry["frames"] == 30
    assert entry["sensors"] == ["/sensors/lidar/points"] and list(entry["layers"]) == list(card.features)
    assert all({"mean", "std", "median", "robust_std", "p01", "p99"} <= set(v) for v in entry["layers"].values())
    refs = load_references([card_path_for("lidar"), out])
    assert refs["spi_lidar"]["stem"].mean == pytest.approx(entry["layers"]["stem"]["mean"])


def test_ok_on_new_nominal_frames_and_alarm_on_an_injected_fault(recorded):
    # New frames of a recorded route. Streets differ far more than frames of one street (docs/monitor.md): a
    # profile covers the routes it was recorded on.
    folder, out = recorded
    nominal, result = _levels(folder, _drive(folder, 11, seconds=2.5, start_m=30.0), out, "nominal_out")
    assert Level.ERROR not in nominal and nominal.count(Level.OK) >= 0.9 * len(nominal), nominal
    assert result.metrics["monitor"]["spi_lidar"]["all"]["OK"] >= 0.9
    rain = _drive(folder, 11, faults=(("rain_clutter", 0.0, 10.0, 1.0),), seconds=2.5, start_m=30.0)
    faulty, _ = _levels(folder, rain, out, "fault_out")
    assert all(lv in (Level.WARN, Level.ERROR) for lv in faulty[3:]), faulty


def test_profile_for_another_model_file_is_refused(recorded, tmp_path):
    _, out = recorded
    data = yaml.safe_load(out.read_text())
    data["models"]["spi_lidar"]["card_sha256"] = "f" * 64
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    with pytest.raises(ReferenceProfileError, match="record a new one with `glassbox profile`"):
        load_references([card_path_for("lidar"), other])
