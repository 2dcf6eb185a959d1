"""The launch contract and the metrics table: one table every stage reads, metrics.json read back as written."""

from __future__ import annotations

import ast
import json
import typing

import pytest

from runner.contract import SCRIPT_OBSERVED, MetricsRecord, Observed
from runner.metrics import METRICS, NOISY_METRICS, TIMING_METRICS, metric_doc
from runner.spec.models import METRIC_DOC, Metric


def test_an_expectation_may_name_exactly_the_metrics_the_table_marks_expectable() -> None:
    assert list(typing.get_args(Metric)) == [m.name for m in METRICS.values() if m.expectable]
    assert METRIC_DOC == metric_doc()
    assert [name for name, metric in METRICS.items() if not metric.help] == []  # the table documents metrics.json


def test_the_schema_names_each_metric_with_its_help() -> None:
    assert metric_doc().startswith("train_time_s: training wall time; startup_s: launch to first step; ")
    assert "; eval_loss and accuracy: on the held-out eval set; " in metric_doc()


def test_timings_are_noisy_and_the_peak_memory_is_the_one_noisy_measurement_that_is_not_a_timing() -> None:
    assert TIMING_METRICS == {
        "train_time_s",
        "timed_time_s",
        "startup_s",
        "samples_per_s",
        "tokens_per_s",
        "step_time_ms",
    }
    assert NOISY_METRICS - TIMING_METRICS == {"peak_memory_mb"}


BUILTIN = {
    "format": 1,
    "run": "single",
    "repeat": 2,
    "metrics": {"train_time_s": 1.5, "samples_per_s": 100.0, "peak_memory_source": "training_peak"},
    "blocks": {"steps": [4, 4], "seconds": [0.1, 0.1]},
    "phases": {"setup_s": 0.2, "written_at": 1.0},
    "loss_curve": [[1, 2.3]],
    "observed": {**Observed(world_size=1, device="cpu").as_json(), "from_a_newer_version": 1},
    "ranks": [{"pid": 1}],
    "attribution": {"step_s": 0.01},
    "disturbance": {"others_share": 0.0},
}
SCRIPT = {
    "format": 1,
    "run": "mine",
    "repeat": 1,
    "workload": "script",
    "metrics": {"train_time_s": 1.5, "tokens_per_s": None},
    "loss_curve": [],
    "observed": {name: None for name in SCRIPT_OBSERVED},
    "ranks": [{"pid": 1}],
    "attribution": {},
    "disturbance": {},
}


def test_metrics_json_reads_back_into_the_record_and_writes_the_same_keys_in_the_same_order() -> None:
    for data in (BUILTIN, SCRIPT):
        written = MetricsRecord.from_json(json.loads(json.dumps(data))).as_json()
        expected = {**data, "observed": {k: v for k, v in data["observed"].items() if k != "from_a_newer_version"}}
        assert json.dumps(written) == json.dumps(expected)


def test_a_script_observes_less_and_its_record_says_only_what_it_observed() -> None:
    observed = Observed(world_size=2, device="cpu", recorded=SCRIPT_OBSERVED)
    assert list(observed.as_json()) == list(SCRIPT_OBSERVED)
    assert Observed.from_json(observed.as_json()) == observed
    assert Observed.nothing().as_json() == {} and not Observed.nothing() and Observed()
    with pytest.raises(ValueError, match="Observed has no field"):
        Observed(recorded=("world_size", "wrold_size"))


def test_a_file_that_is_not_a_launch_record_is_refused_with_what_it_lacks() -> None:
    for data, message in (
        ([], "metrics.json does not hold a JSON object"),
        ({k: v for k, v in BUILTIN.items() if k != "observed"}, "metrics.json has no 'observed'"),
        ({**BUILTIN, "metrics": [1]}, "metrics.json's 'metrics' is not a JSON object"),
    ):
        try:
            MetricsRecord.from_json(data)
        except ValueError as exc:
            assert str(exc) == message
        else:
            raise AssertionError(f"accepted {data!r}")


def test_a_recorded_launchs_observation_is_written_back_as_it_was_read() -> None:
    # summary.json's repeats from older accel-runs: --resume reads them and writes them again
    from conftest import ROOT
    from runner.results.records import LaunchRecord

    for path in sorted((ROOT / "tests" / "cases").glob("**/summary.json")):
        for run in json.loads(path.read_text())["runs"].values():
            for repeat in run["repeats"]:
                if "directory" not in repeat:
                    continue  # a hand-trimmed case, not a launch record
                written = LaunchRecord.from_json(repeat).as_json()["observed"]
                assert json.dumps(written) == json.dumps(repeat.get("observed", {})), path


# functions that take a metric's name (the report's entries, the records, the table)
_TAKES_A_METRIC = {"shown", "shown_ratio", "_with_spread", "values", "by_repeat", "unit_of", "interval_factors"}


def _metric_names_read(tree: ast.AST) -> set[str]:
    """Every string the code looks up in a metrics mapping, compares with a metric, or hands to a function that
    takes a metric."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            literals = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if called == "get" and isinstance(func, ast.Attribute) and literals[:1]:
                source = ast.unparse(func.value)
                if ("metrics" in source or source == "m") and not source.endswith("spread"):
                    names.add(literals[0])
            elif called in _TAKES_A_METRIC:
                names.update(literals[:1] if called == "_with_spread" else literals)
        elif isinstance(node, ast.Compare) and ast.unparse(node.left).endswith("metric"):
            for right in node.comparators:  # metric == "name", metric in ("a", "b")
                items = right.elts if isinstance(right, ast.Tuple | ast.List | ast.Set) else [right]
                names.update(i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            source = ast.unparse(node.value)
            if isinstance(node.slice.value, str) and ("metrics" in source or source == "m"):
                names.add(node.slice.value)
    return names - {"metrics", "unfit_metrics"}


def _in_runner(names_in: typing.Callable[[ast.AST], set[str]]) -> dict[str, str]:
    """Each name `names_in` finds in runner/'s modules, with the first file it is in."""
    from conftest import ROOT

    found: dict[str, str] = {}
    for path in sorted((ROOT / "runner").rglob("*.py")):
        for name in names_in(ast.parse(path.read_text(encoding="utf-8"))):
            found.setdefault(name, path.name)
    return found


def test_every_metric_name_the_code_reads_is_in_the_table() -> None:
    read = _in_runner(_metric_names_read)
    assert {"samples_per_s", "peak_memory_mb", "train_time_s", "rate_ci_low", "tokens_per_s"} <= set(read)
    assert {name: where for name, where in read.items() if name not in METRICS} == {}


def _metric_names_written(tree: ast.AST) -> set[str]:
    """The keys of every dict literal a writer builds as metrics: assigned to `metrics`, or in a function
    whose name says it makes metrics (the worker's _timing_metrics, the timing and memory as_metrics), and the
    keys stored into them."""
    names: set[str] = set()
    for node in ast.walk(tree):
        dicts: list[ast.AST] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "metrics" in node.name:
            dicts = [d for d in ast.walk(node) if isinstance(d, ast.Dict)]
            stored = [s for s in ast.walk(node) if isinstance(s, ast.Subscript) and isinstance(s.ctx, ast.Store)]
            names.update(s.slice.value for s in stored if isinstance(s.slice, ast.Constant))
        elif (
            isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and isinstance(node.slice, ast.Constant)
        ):
            if ast.unparse(node.value) == "metrics":
                names.add(node.slice.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "metrics" for t in targets):
                dicts = [node.value]
        for found in dicts:
            assert isinstance(found, ast.Dict)
            names.update(k.value for k in found.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return names


def test_every_metric_the_writers_put_in_metrics_json_is_in_the_table() -> None:
    written = _in_runner(_metric_names_written)
    assert {"train_time_s", "first_step_at", "timed_blocks", "memory_data_mb", "tokens_per_s"} <= set(written)
    assert {name: where for name, where in written.items() if name not in METRICS} == {}
