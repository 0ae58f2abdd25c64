"""Fleet runs on real (tiny) drives: a corrupt bag does not sink the run, re-runs resume, chunks add up, the CLI,
and on a local two-worker Ray cluster a killed worker's task is retried with the same result."""
from __future__ import annotations

import json
import shutil

import pytest
from glassbox.bag.replay import replay
from glassbox.fleet.run import KILL_HOOK_ENV, RayExecutor, Resources, ResultStore, identical, run_fleet

GOOD = ("drive0", "drive1", "drive2")


@pytest.fixture(scope="module")
def serial_run(drives, fleet_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet_serial")
    bags = [drives[n] for n in (*GOOD, "broken")]
    return out, bags, run_fleet(bags, out, fleet_config())


def test_corrupt_bag_is_reported_and_the_rest_replays(serial_run, drives, fleet_config, tmp_path):
    out, _, run = serial_run
    by_name = {r["name"]: r for r in run.records}
    assert [r["name"] for r in run.records] == [*GOOD, "broken"] and run.ran == 4
    assert by_name["broken"]["status"] == "failed" and "truncated" in by_name["broken"]["reason"]
    for name in GOOD:
        rec = by_name[name]
        assert rec["status"] == "ok" and rec["reason"] == ""
        assert rec["frames"] == {"lidar": 10, "segmentation": 15}
        assert 0.9 < rec["duration_s"] < 1.0
        assert set(rec["metrics"]["segmentation"]) == {"all", "day", "night"}
    # The fleet record holds what a plain replay of the same bag computes.
    plain = replay(drives["drive1"], tmp_path / "plain", fleet_config())
    assert by_name["drive1"]["metrics"]["segmentation"] == plain.metrics["segmentation"]
    assert by_name["drive1"]["messages_written"] == plain.messages_written
    assert (out / by_name["drive1"]["out_bag"]).is_dir()


def test_rerun_skips_done_units_and_redoes_a_lost_one(serial_run, fleet_config):
    out, bags, first = serial_run
    again = run_fleet(bags, out, fleet_config())
    assert (again.ran, again.skipped) == (0, 4)
    assert all(identical(a, b) for a, b in zip(first.records, again.records))
    ResultStore(out).path(first.units[1]).unlink()        # as if the run had stopped while drive1 was in flight
    resumed = run_fleet(bags, out, fleet_config())
    assert (resumed.ran, resumed.skipped) == (1, 3)
    assert identical(resumed.records[1], first.records[1])


def test_chunks_of_a_long_bag_cover_it(serial_run, drives, fleet_config, tmp_path):
    whole = {r["name"]: r for r in serial_run[2].records}["drive2"]
    run = run_fleet([drives["drive2"]], tmp_path, fleet_config(capabilities=("lidar",)), chunk_s=0.4)
    assert [u.name for u in run.units] == ["drive2#0", "drive2#1", "drive2#2"]
    assert all(r["status"] == "ok" for r in run.records)
    assert sum(r["frames"]["lidar"] for r in run.records) == whole["frames"]["lidar"]
    assert run.units[0].end_ns == run.units[1].start_ns


def test_cli_fleet_writes_report_and_exits_2_on_a_failed_bag(drives, fleet_cards, tmp_path):
    from glassbox.cli import main
    cfg = tmp_path / "replay.yaml"
    cfg.write_text(f"capabilities: [segmentation]\nsegmentation_card: {fleet_cards['segmentation']}\n")
    listing = tmp_path / "bags.txt"
    listing.write_text(f"{drives['drive0']}\n{drives['broken']}\n")
    argv = ["replay", str(drives["drive0"].parent / "drive[01].mcap"), f"@{listing}", "--out", str(tmp_path / "out"),
            "--config", str(cfg), "--quiet"]
    assert main(argv) == 2
    summary = json.loads((tmp_path / "out/report/fleet.json").read_text())
    assert summary["units"][0]["name"] == "broken"
    assert {u["name"] for u in summary["units"]} == {"drive0", "drive1", "broken"}
    assert summary["aggregates"]["figures"]["segmentation mIoU"]["n"] == 2
    assert (tmp_path / "out/report/fleet.html").is_file() and summary["ran"] == 3
    assert main(argv) == 2 and json.loads((tmp_path / "out/report/fleet.json").read_text())["skipped"] == 3


# ------------------------------------------------------------------------------------------------ on Ray
@pytest.fixture
def ray_cluster(tmp_path_factory, monkeypatch):
    """A local Ray instance with two worker CPUs, no dashboard, its files in a temporary folder."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'glassbox[fleet]')")
    marker = tmp_path_factory.mktemp("kill") / "killed"
    monkeypatch.setenv(KILL_HOOK_ENV, f"drive1:{marker}")     # read by the workers, which inherit it
    temp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(temp))
    yield marker
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_two_workers_survive_a_killed_worker_and_a_corrupt_bag(ray_cluster, serial_run, fleet_config, tmp_path):
    _, bags, clean = serial_run
    run = run_fleet(bags, tmp_path, fleet_config(), RayExecutor(Resources(num_cpus=1), max_retries=2))
    assert run.executor == "ray" and run.ran == 4
    killed_pid = int(ray_cluster.read_text())            # drive1's first attempt ended its worker process
    by_name = {r["name"]: r for r in run.records}
    assert by_name["drive1"]["timing"]["pid"] != killed_pid
    assert by_name["broken"]["status"] == "failed" and "truncated" in by_name["broken"]["reason"]
    for a, b in zip(clean.records, run.records):
        if a["name"] != "broken":                        # its reason names the output folder
            assert identical(a, b), a["name"]
