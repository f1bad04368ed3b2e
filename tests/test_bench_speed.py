"""bench/bench_speed.py's phase loop (the measurements themselves need a GPU): what speed.json says about a phase
that is skipped, fails, or is stopped from outside while it runs."""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_speed import Record, run_phases  # noqa: E402


class StoppedFromOutside(BaseException):
    """What a time limit's signal does to the loop: not an Exception, so nothing records it."""


class FakeBench:
    def __init__(self, record: Record):
        self.record, self.seen = record, []

    def quick_phase(self):
        self.seen.append(("quick", json.loads(self.record.path.read_text())["unfinished"]))

    def failing_phase(self):
        raise RuntimeError("out of memory")

    def stopped_phase(self):
        raise StoppedFromOutside


def test_a_phase_is_marked_unfinished_on_disk_until_it_ends(tmp_path):
    record = Record(tmp_path, {"device": "cpu"})
    bench = FakeBench(record)
    run_phases(bench, record, ["quick", "failing"], time_limit=0, started=time.perf_counter())
    assert list(bench.seen[0][1]) == ["quick"]   # on disk while it ran
    written = json.loads(record.path.read_text())
    assert written["unfinished"] == {}
    assert "out of memory" in written["errors"]["failing"]


def test_a_call_stopped_during_a_phase_leaves_its_name_and_start(tmp_path):
    record = Record(tmp_path, {"device": "cpu"})
    started = time.perf_counter() - 89.0   # as if the reference phases had taken 89 s
    try:
        run_phases(FakeBench(record), record, ["quick", "stopped", "quick"], time_limit=0, started=started)
    except StoppedFromOutside:
        pass
    written = json.loads(record.path.read_text())
    assert list(written["unfinished"]) == ["stopped"] and 89.0 <= written["unfinished"]["stopped"] < 120.0
    assert written["errors"] == {} and written["skipped"] == []


def test_phases_after_the_time_limit_are_skipped(tmp_path):
    record = Record(tmp_path, {"device": "cpu"})
    bench = FakeBench(record)
    run_phases(bench, record, ["quick", "quick"], time_limit=10.0, started=time.perf_counter() - 11.0)
    written = json.loads(record.path.read_text())
    assert bench.seen == [] and written["skipped"] == ["quick", "quick"] and written["unfinished"] == {}
