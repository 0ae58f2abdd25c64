"""Fleet planning and the fleet report, without replaying: bag lists, content keys, confidence intervals, order."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from glassbox.bag.replay import ReplayConfig
from glassbox.fleet.plan import FleetError, HashCache, config_hash, expand_bags, plan
from glassbox.fleet.report import bootstrap_ci, fleet_summary, write_fleet_report


def test_bags_from_paths_globs_and_list_files(tmp_path):
    for name in ("a.mcap", "b.mcap", "c.mcap"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.mcap").write_bytes(b"y")
    listing = tmp_path / "bags.txt"
    listing.write_text("# the night drives\nsub/d.mcap\n\na.mcap  # again: dropped\n")
    got = expand_bags([tmp_path / "c.mcap", str(tmp_path / "[ab].mcap"), f"@{listing}"])
    assert [p.name for p in got] == ["c.mcap", "a.mcap", "b.mcap", "d.mcap"]
    with pytest.raises(FleetError, match="no bag matches"):
        expand_bags([str(tmp_path / "*.db3")])
    with pytest.raises(FleetError, match="bag list not found"):
        expand_bags(["@missing.txt"])


def test_unit_key_follows_bag_content_and_model_cards_not_paths(tmp_path):
    a, b = tmp_path / "a.mcap", tmp_path / "b.mcap"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    card = tmp_path / "spi.card.yaml"
    card.write_text("name: one\n")
    cfg = ReplayConfig(capabilities=("lidar",), lidar_card=str(card))
    ka, kb = (u.key for u in plan([a, b], cfg))
    assert ka == kb                                        # content, not name
    assert config_hash(cfg) == config_hash(ReplayConfig(capabilities=("lidar",), lidar_card=str(card), threads=4))
    card.write_text("name: two\n")                         # a new model: every unit is redone
    assert plan([a], cfg)[0].key != ka
    card.write_text("name: one\n")
    assert plan([a], cfg)[0].key == ka
    assert plan([a], ReplayConfig(capabilities=("lidar",), lidar_card=str(card), entropy_every_n=2))[0].key != ka


def test_hash_cache_reads_each_file_once(tmp_path):
    bag = tmp_path / "a.mcap"
    bag.write_bytes(b"0123456789")
    cache = HashCache(tmp_path / "hashes.json")
    first = cache.bag_hash(bag)
    cache.save()
    st = bag.stat()
    bag.write_bytes(b"9876543210")                         # same size, mtime put back: the cache answers
    os.utime(bag, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert HashCache(tmp_path / "hashes.json").bag_hash(bag) == first
    os.utime(bag, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # touched: read again
    assert HashCache(tmp_path / "hashes.json").bag_hash(bag) != first


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    x = list(np.random.default_rng(1).normal(0.6, 0.1, 40))
    lo, hi = bootstrap_ci(x)
    assert lo < np.mean(x) < hi
    # The percentile interval of the mean is close to mean ± 1.96 s/sqrt(n) for a normal sample.
    half = 1.96 * np.std(x, ddof=1) / np.sqrt(len(x))
    assert abs((hi - lo) / 2 - half) < 0.25 * half
    assert bootstrap_ci(x) == (lo, hi)
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert bootstrap_ci([0.5]) is None


def _rec(name, status="ok", miou=None, night=None, warn=0.0):
    seg = {"all": {"miou": miou, "frames": 10}, "night": {"miou": night, "frames": 4}} if miou is not None else None
    return {"name": name, "status": status, "reason": "" if status == "ok" else f"{name} is broken",
            "duration_s": 1.0, "frames": {"segmentation": 10}, "metrics": {"segmentation": seg} if seg else {},
            "monitor": {"m": {"all": {"OK": 1 - warn, "WARN": warn, "ERROR": 0.0}}},
            "timing": {"wall_s": 2.0, "cpu_s": 1.5, "latency_ms": {"segmentation": {"total": 10.0}}}}


def test_fleet_summary_worst_first_and_aggregates_over_ok_units(tmp_path):
    records = [_rec("good", miou=0.8, night=0.7), _rec("bad", miou=0.3, night=0.1, warn=0.5),
               _rec("cut", "partial", miou=0.0, night=0.0), _rec("gone", "failed"), _rec("fine", miou=0.6, night=0.5)]
    s = fleet_summary(records)
    assert [u["name"] for u in s["units"]] == ["gone", "cut", "bad", "fine", "good"]
    agg = s["aggregates"]
    assert (agg["units"], agg["ok"], agg["partial"], agg["failed"]) == (5, 3, 1, 1)
    miou = agg["figures"]["segmentation mIoU"]
    assert miou["n"] == 3 and miou["mean"] == pytest.approx(np.mean([0.8, 0.3, 0.6]), abs=1e-4)
    assert 0.3 <= miou["ci95"][0] < miou["mean"] < miou["ci95"][1] <= 0.8
    assert agg["figures"]["lidar car BEV AP@0.5"] == {"n": 0, "mean": None, "ci95": None}
    assert [(w["unit"], w["segment"]) for w in s["worst_segments"][:2]] == [("cut", "night"), ("bad", "night")]
    html = write_fleet_report(records, tmp_path / "report")
    text = html.read_text()
    assert "gone is broken" in text and "fleet_figures.png" in text
    assert (tmp_path / "report/fleet_figures.png").is_file()
    assert text.index("<td class='text'>gone</td>") < text.index("<td class='text'>good</td>")
    assert json.loads((tmp_path / "report/fleet.json").read_text())["schema"] == "glassbox.fleet/1"
