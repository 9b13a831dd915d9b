"""The benchmark's machinery: it runs end to end, its results are well formed,
its percentiles are right, and it leaves no process behind.

No timing claims here (DESIGN §7): how fast things are is what the benchmark
prints, not what a test asserts. These runs are tiny and only check that every
number is there, positive, and that each ratio comes from the same run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from wsdemo.bench import runner as bench
from wsdemo.bench.runner import Row, Settings, percentile

pytestmark = pytest.mark.timeout(120)


def child_pids() -> set[int]:
    """Processes whose parent is this test process."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            found.add(int(entry.name))
    return found


def tiny(**changes) -> Settings:
    """Small enough to run in seconds; the shape of every result is the same. (20,000
    missed events: a catch-up of fewer can take less than one clock tick of CPU.)"""
    return Settings.quick_settings(round_trips=60, latency_seconds=2.0, seconds=0.3,
                                   clients=(1, 20), idle=(50,), missed=20_000, progress=False,
                                   settle_limit=10.0, **changes)


# --- percentiles --------------------------------------------------------------------------

def test_percentile_of_1_to_100():
    values = list(range(1, 101))
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100


def test_percentile_does_not_care_about_order_and_matches_numpy():
    numpy = pytest.importorskip("numpy")
    values = [7.0, 1.0, 3.5, 100.0, 2.0, 2.0, 9.0]
    for q in (0, 10, 25, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(numpy.percentile(values, q)))


def test_percentile_of_one_value_and_of_nothing():
    assert percentile([42.0], 99) == 42.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_a_slow_outlier_moves_p99_not_p50():
    samples = [100.0] * 99 + [40_000.0]
    assert percentile(samples, 50) == 100.0
    assert percentile(samples, 99) > 100.0


# --- rows -----------------------------------------------------------------------------------

def test_ratios_and_the_generator_verdict_come_from_the_row_itself():
    faster = Row("x", "x.1", "m", "msg/s", "higher", 50.0, {"tornado": 100.0, "websockets": None},
                 ceiling=400.0)
    assert faster.ratios == {"tornado": 0.5, "websockets": None}
    assert faster.generator_ahead is True
    behind = Row("x", "x.2", "m", "msg/s", "higher", 500.0, {"tornado": 100.0}, ceiling=400.0)
    assert behind.generator_ahead is False
    latency = Row("x", "x.3", "m", "µs", "lower", 300.0, {"tornado": 200.0}, ceiling=90.0)
    assert latency.generator_ahead is True
    floor = Row("x", "x.4", "m", "KiB/conn", "lower", 20.0, {"tornado": 15.0}, ceiling=2.0,
                judge=False)
    assert floor.generator_ahead is None


# --- end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results():
    before = child_pids()
    out = bench.run(tiny(), only=["latency", "fanout", "publish", "catchup"])
    out["children_left"] = child_pids() - before
    return out


def test_runs_end_to_end_without_failure(results):
    assert results["failed"] == []
    keys = [row["key"] for row in results["rows"]]
    assert keys == ["ceiling.echo", "latency.p50", "latency.p99", "fanout.1", "fanout.20",
                    "fanout.cpu.1", "fanout.cpu.20", "join.20", "publish.memory",
                    "publish.normal", "publish.full", "publish.cpu.memory", "publish.cpu.normal",
                    "publish.cpu.full", "catchup.memory", "catchup.sqlite",
                    "catchup.cpu.memory", "catchup.cpu.sqlite"]


def test_every_number_is_positive_and_every_ratio_is_from_this_run(results):
    for row in results["rows"]:
        measured = [v for v in (row["wsdemo"], *row["baselines"].values()) if v is not None]
        assert measured, row["key"]
        assert all(math.isfinite(v) and v > 0 for v in measured), row
        for name, value in row["baselines"].items():
            if row["wsdemo"] is None or value is None:
                assert row["ratios"][name] is None
            else:
                assert row["ratios"][name] == pytest.approx(row["wsdemo"] / value)


def test_the_generator_ceiling_is_next_to_every_result(results):
    for row in results["rows"]:
        if ".cpu." in row["key"]:
            continue  # the raw server's CPU time can be below one clock tick
        assert row["ceiling"] is not None and row["ceiling"] > 0, row["key"]
    assert results["generator"]["ceiling_echo_msgs_per_s"] > 0
    assert isinstance(results["generator"]["faster_than_every_server"], bool)


def test_every_server_was_measured(results):
    for row in results["rows"]:
        if row["key"] == "ceiling.echo":
            continue  # the control server has no echo
        assert row["wsdemo"] is not None, row["key"]
        assert set(row["baselines"]) == {"tornado", "websockets"}


def test_latency_comes_from_many_round_trips(results):
    samples = results["details"]["latency_samples_us"]
    assert set(samples) == {"raw", "tornado", "websockets", "wsdemo"}
    assert all(len(v) >= 20 for v in samples.values())


def test_catchup_replays_every_missed_event(results):
    for key in ("catchup.memory", "catchup.sqlite"):
        row = next(r for r in results["rows"] if r["key"] == key)
        assert "INCOMPLETE" not in row["note"]


def test_no_process_is_left_behind(results):
    assert results["children_left"] == set()
    assert bench._live == set()


def test_the_results_are_json_and_the_table_prints(results):
    text = json.dumps({k: v for k, v in results.items() if k != "children_left"},
                      allow_nan=False)
    assert json.loads(text)["meta"]["placement"]
    table = bench.format_table(results)
    assert "set→event round trip p50" in table
    assert "generator ceiling:" in table
    assert max(len(line) for line in table.splitlines()) <= 100, "fits a 100-column terminal"
    assert "How to read it:" in table
    # Every goal is listed, met, MISSED or (1,000 clients are not in the tiny run) not run.
    assert [g["goal"] for g in results["goals"]] == [text for text, _ in bench.GOALS]
    assert all(g["goal"] in table for g in results["goals"])
    assert any(g["met"] is None for g in results["goals"]), "the tiny run has no 1,000"


def test_command_line_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    before = child_pids()
    status = bench.main(["--quick", "--only", "ceiling", "--seconds", "0.2", "--no-progress",
                         "--json", str(path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "echo, 16 in flight" in out and "generator ceiling:" in out
    saved = json.loads(path.read_text())
    assert [row["key"] for row in saved["rows"]] == ["ceiling.echo"]
    assert saved["rows"][0]["ceiling"] > 0
    assert child_pids() - before == set()


def test_unknown_scenario_is_a_command_line_error(capsys):
    assert bench.main(["--only", "nonsense", "--no-progress"]) == 2
    assert "unknown scenario" in capsys.readouterr().err


def test_a_failed_scenario_is_reported_and_its_servers_stopped(monkeypatch):
    started = []

    def broken(b: bench.Bench) -> None:
        started.append(b.server("raw"))
        raise bench.ChildFailed("simulated failure")

    monkeypatch.setitem(bench.RUNNERS, "ceiling", broken)
    before = child_pids()
    out = bench.run(tiny(), only=["latency"])
    assert out["failed"] == [{"scenario": "ceiling", "error": "simulated failure"}]
    assert out["rows"] == []  # without a ceiling nothing else is judged
    assert started and started[0].proc.poll() is not None
    assert child_pids() - before == set()


def test_without_redis_the_scenario_is_skipped_with_its_reason(monkeypatch):
    # Simulate a machine without Redis (this one may well have it).
    why = "redis-server is not installed (simulated)"
    monkeypatch.setattr(bench, "redis_available", lambda: why)
    fake = type("FakeBench", (), {"skipped": []})()
    bench.scenario_redis(fake)
    assert fake.skipped == [{"scenario": "redis", "reason": why}]


def test_goals_are_read_from_the_rows_met_missed_or_not_run():
    def row(key, wsdemo, tornado, websockets=None):
        baselines = {"tornado": tornado, "websockets": websockets}
        return {"key": key, "wsdemo": wsdemo, "baselines": baselines,
                "ratios": {k: (None if v is None else wsdemo / v) for k, v in baselines.items()}}

    results = {"rows": [row("fanout.100", 300.0, 50.0, 250.0),
                        row("fanout.1000", 100.0, 50.0, 200.0),
                        row("latency.p50", 120.0, 100.0)]}
    by_goal = {g["goal"]: g for g in bench.goals(results)}
    fanout = next(g for text, g in by_goal.items() if text.startswith("broadcast"))
    assert fanout["met"] is False, "1,000 clients: 0.5x websockets"
    latency = next(g for text, g in by_goal.items() if text.startswith("set -> event"))
    assert latency["met"] is True and latency["measured"] == "1.20×"
    redis = next(g for text, g in by_goal.items() if "Redis" in text)
    assert redis["met"] is None, "not measured: not run, not met"


def test_the_progress_bar_is_drawn_only_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        bar = bench.Progress(True, stream)
        bar.begin("fanout", 2)
        bar.step("1 clients: raw")
        bar.end()
        assert bool(stream.getvalue()) is drawn
