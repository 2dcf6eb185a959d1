"""Compiling for SLURM: the batch script each launch becomes, read as text (no cluster needed)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import TINY_SPEC
from runner.plan.compile import compile_launch
from runner.plan.machine import probe_machine
from runner.plan.sbatch import SBATCH_FILE, compile_for_slurm, task_command
from runner.spec.models import SlurmEngineSection
from runner.spec.validate import validate_text
from runner.vocab import COMMAND_FILE, CONFIG_FILE

ENGINE = """\
engine:
  kind: slurm
  nodes: 2
  gpus_per_node: 4
  partition: gpu
  time: "02:00:00"
  account: myproject
  setup: ["module load cuda/12.4", "source .venv/bin/activate"]
  sbatch_args: ["--qos=high", "--comment=it's mine; rm -rf /"]
launch:
  processes: 8
"""


def compiled(text: str, tmp_path: Path, pinned: int | None = None) -> tuple[str, dict[str, str]]:
    result = validate_text(text)
    assert result.spec is not None, [d.format() for d in result.diagnostics]
    run = result.spec.runs["main"]
    engine = run.config.engine
    assert isinstance(engine, SlurmEngineSection)
    plan = compile_launch(
        run, spec_name="tiny", machine=probe_machine(), directory=tmp_path, port=pinned or 0, base_env={}
    )
    plan = compile_for_slurm(plan, engine, spec_name="tiny", pinned_port=pinned)
    return plan.files[SBATCH_FILE], plan.files


def test_the_job_asks_slurm_for_what_the_engine_section_says(tmp_path: Path) -> None:
    script, _ = compiled(TINY_SPEC + ENGINE, tmp_path)
    options = [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]
    assert options == [
        "--job-name=accel-run.tiny.main.1",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=4",
        "--time=02:00:00",
        f"--output={tmp_path}/stdout.log",
        f"--error={tmp_path}/stderr.log",
        "--gpus-per-node=4",
        "--partition=gpu",
        "--account=myproject",
        "--qos=high",
        shlex.quote("--comment=it's mine; rm -rf /"),
    ]


def test_each_node_expands_its_own_machine_rank(tmp_path: Path) -> None:
    script, _ = compiled(TINY_SPEC + ENGINE, tmp_path)
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    words = shlex.split(srun)
    assert words[:6] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash"]
    inner = words[7]
    # single-quoted in the script: the batch shell passes $SLURM_NODEID on unexpanded, each task's bash expands it
    assert "'" + inner.replace("'", "'\"'\"'") + "'" in srun
    assert '--machine_rank "$SLURM_NODEID"' in inner
    assert '--main_process_ip "$ACCEL_RUN_HEAD_ADDR" --main_process_port "$ACCEL_RUN_PORT" "$@"' in inner
    assert words[8:10] == ["accel-run-task", "--config_file"]


def test_the_head_address_and_port_come_from_the_allocation(tmp_path: Path) -> None:
    script, _ = compiled(TINY_SPEC + ENGINE, tmp_path)
    assert 'head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in script
    assert "export ACCEL_RUN_PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))" in script
    pinned, _ = compiled(TINY_SPEC + ENGINE + "  main_process_port: 29555\n", tmp_path, pinned=29555)
    assert "export ACCEL_RUN_PORT=29555" in pinned


def test_setup_lines_run_before_srun_in_their_order(tmp_path: Path) -> None:
    script, _ = compiled(TINY_SPEC + ENGINE, tmp_path)
    lines = script.splitlines()
    module, venv = lines.index("module load cuda/12.4"), lines.index("source .venv/bin/activate")
    srun = next(i for i, line in enumerate(lines) if line.startswith("srun "))
    assert module < venv < srun


def test_the_script_is_valid_bash(tmp_path: Path) -> None:
    script, _ = compiled(TINY_SPEC + ENGINE, tmp_path)
    path = tmp_path / SBATCH_FILE
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).stderr == ""


def test_the_accelerate_config_leaves_rank_address_and_port_to_the_job(tmp_path: Path) -> None:
    _, files = compiled(TINY_SPEC + ENGINE, tmp_path)
    config = files[CONFIG_FILE]
    assert "num_machines: 2" in config and "num_processes: 8" in config
    for key in ("machine_rank", "main_process_ip", "main_process_port"):
        assert f"\n{key}:" not in config
    assert f"sbatch {tmp_path}/{SBATCH_FILE}" in files[COMMAND_FILE]


def test_a_cpu_cluster_gets_the_gloo_setup_that_works_locally(tmp_path: Path) -> None:
    script, files = compiled(TINY_SPEC + "engine: {kind: slurm, nodes: 2}\nlaunch: {processes: 2}\n", tmp_path)
    assert "export ACCELERATE_USE_CPU=true" in script
    assert "distributed_type: MULTI_GPU" in files[CONFIG_FILE]
    assert "--gpus-per-node" not in script


def test_the_per_node_flags_follow_the_launcher_and_precede_its_arguments() -> None:
    from runner.contract import Declared
    from runner.plan.launch import LaunchPlan

    declared = Declared("cpu", 2, 1, "MULTI_CPU", "no", 1, 1, 2)
    plan = LaunchPlan(
        "r",
        1,
        Path("/x"),
        ("python", "-m", "accelerate.commands.launch", "--config_file", "c.yaml", "-m", "w"),
        {},
        {},
        (),
        0,
        declared,
    )
    argv = task_command(plan)
    assert argv[:2] == ["bash", "-c"]
    assert argv[2].startswith("exec python -m accelerate.commands.launch --machine_rank")
    assert argv[3:] == ["accel-run-task", "--config_file", "c.yaml", "-m", "w"]


def test_dry_run_writes_the_batch_script_and_submits_nothing(tmp_path: Path) -> None:
    from runner.pipeline import RunOptions, dry_run

    result = validate_text(TINY_SPEC + "engine: {kind: slurm, nodes: 2}\nlaunch: {processes: 2}\n")
    assert result.spec is not None
    planned = dry_run(result.spec, options=RunOptions(output=str(tmp_path)))
    (run,) = planned.runs
    assert Path(run.sbatch).is_file() and run.machines == 2
    assert f"sbatch --parsable {run.sbatch}" in planned.text()
    assert "2 process(es) on 2 SLURM node(s)" in planned.text()


def engine_of_runs(text: str, kind: str) -> dict[str, str]:
    from runner.spec.engine_choice import engine_sets
    from runner.spec.load import parse_spec

    result = validate_text(text, sets=engine_sets(parse_spec(text, "<spec>"), kind))
    assert result.spec is not None, [d.format() for d in result.diagnostics]
    return {name: repr(run.config.engine) for name, run in result.spec.runs.items()}


SLURM_RUNS = TINY_SPEC + (
    "engine: {kind: slurm, nodes: 2, time: '00:05:00'}\nlaunch: {processes: 2}\n"
    "runs:\n  two: {}\n  one: {engine: {nodes: 1}, launch: {processes: 1}}\n  here: {engine: {kind: local}}\n"
)


def test_engine_slurm_keeps_the_specs_slurm_settings() -> None:
    engines = engine_of_runs(SLURM_RUNS, "slurm")
    assert "nodes=2" in engines["two"] and "time='00:05:00'" in engines["two"]
    assert "nodes=1" in engines["one"]
    assert engines["here"] == engines["two"]  # its local override set aside: the top level applies


def test_engine_local_sets_every_engine_section_aside() -> None:
    assert set(engine_of_runs(SLURM_RUNS, "local").values()) == {"LocalEngineSection(kind='local')"}


def test_engine_slurm_keeps_a_runs_own_slurm_section_under_a_local_top_level() -> None:
    text = TINY_SPEC + "runs:\n  here: {}\n  there:\n    engine: {kind: slurm, nodes: 2, partition: gpu}\n"
    text += "    launch: {processes: 2}\n"
    engines = engine_of_runs(text, "slurm")
    assert "nodes=2" in engines["there"] and "partition='gpu'" in engines["there"]
    assert "nodes=1" in engines["here"]


def test_the_report_says_when_the_command_line_chose_the_engine_and_which_jobs_ran() -> None:
    import json

    from conftest import ROOT
    from runner.report.text import render

    summary = json.loads((ROOT / "tests/cases/summaries/three-models/summary.json").read_text())
    summary["options"] = {**summary.get("options", {}), "engine": "slurm", "sets": ["engine={kind: slurm}"]}
    summary["environment"]["engine"] = "slurm"  # the kinds the session's runs used, as the session writes it
    name = next(iter(summary["runs"]))
    launch = summary["runs"][name]["repeats"][0]
    launch["job_id"], launch["observed"] = "41", {**launch.get("observed", {}), "nodes": ["n1", "n2"]}
    text = render(summary, markdown=False)
    assert "Every run on the slurm engine (--engine slurm, applied as the --set options below)." in text
    assert f"{name}: SLURM job(s) 41 on n1, n2." in text


# --- nothing injected: control characters refused where they are written, quoting on one line --------

PWNED = "x\ntouch {marker}\n#"

# Every spec value that reaches job.sbatch (validation must refuse a newline in it, located at VALUE). A field
# added to the engine section must join this table (test_every_engine_field_is_covered).
SLURM_SPEC = TINY_SPEC + "engine: {kind: slurm}\n"
SBATCH_FIELDS = {
    "name": SLURM_SPEC.replace("name: tiny", "name: VALUE"),
    "engine.partition": TINY_SPEC + "engine: {kind: slurm, partition: VALUE}\n",
    "engine.account": TINY_SPEC + "engine: {kind: slurm, account: VALUE}\n",
    "engine.time": TINY_SPEC + "engine: {kind: slurm, time: VALUE}\n",
    "engine.setup": TINY_SPEC + "engine: {kind: slurm, setup: [VALUE]}\n",
    "engine.sbatch_args": TINY_SPEC + "engine: {kind: slurm, sbatch_args: [VALUE]}\n",
    "launch.env": SLURM_SPEC + "launch: {env: {FOO: VALUE}}\n",
    "launch.env name": SLURM_SPEC + "launch: {env: {VALUE: '1'}}\n",
    "runs": SLURM_SPEC + "runs: {VALUE: {}}\n",
    "script.path": "name: s\nengine: {kind: slurm}\nscript: {path: VALUE}\n",
    "script.args": "name: s\nengine: {kind: slurm}\nscript: {path: missing.py, args: [VALUE]}\n",
}


@pytest.mark.parametrize("field", sorted(SBATCH_FIELDS))
def test_a_newline_in_any_value_that_reaches_job_sbatch_is_refused_at_it(field: str) -> None:
    template = SBATCH_FIELDS[field]
    lines = template.splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "VALUE" in text)
    col = lines[line - 1].index("VALUE") + 1  # at the value, or at the key that is refused
    value = json.dumps(PWNED.format(marker="/tmp/pwned_sbatch"))  # a YAML double-quoted string
    result = validate_text(template.replace("VALUE", value))
    assert result.spec is None
    found = [d for d in result.diagnostics if (d.line, d.col) == (line, col)]
    assert [d.severity for d in found] == ["error"], [d.format() for d in result.diagnostics]
    assert "contains a line break (\\n), which would start a new line in command.txt, job.sbatch" in found[0].message


def test_every_engine_field_is_covered() -> None:
    texts = {
        name
        for name, info in SlurmEngineSection.model_fields.items()
        if "str" in str(info.annotation) and name != "kind"
    }
    assert {f"engine.{name}" for name in texts} <= set(SBATCH_FIELDS)


def hostile_plan(tmp_path: Path, marker: Path):  # type: ignore[no-untyped-def]
    """A compiled SLURM launch carrying newlines that validation never saw: an inherited variable's name, and
    values set after validation (what a future field forgetting the check would write)."""
    from dataclasses import replace

    result = validate_text(TINY_SPEC + "engine: {kind: slurm}\n")
    assert result.spec is not None
    run = result.spec.runs["main"]
    engine = run.config.engine
    assert isinstance(engine, SlurmEngineSection)
    hostile = PWNED.format(marker=marker)
    plan = compile_launch(
        run,
        spec_name="tiny",
        machine=probe_machine(),
        directory=tmp_path,
        port=0,
        base_env={f"ACCELERATE_X{hostile}": "1"},
    )
    plan = replace(plan, env_set={**plan.env_set, "FOO": hostile})
    engine = engine.model_copy(update={"sbatch_args": [f"--comment={hostile}"]})
    return plan, compile_for_slurm(plan, engine, spec_name="tiny", pinned_port=None)


def test_command_txt_and_job_sbatch_keep_every_value_on_its_line(tmp_path: Path) -> None:
    """Run by bash: command.txt's header and job.sbatch's #SBATCH header are comments only, and the exports
    give back the exact values."""
    from runner.plan.compile import command_text

    marker = tmp_path / "pwned"
    plan, slurm = hostile_plan(tmp_path, marker)
    header = command_text(plan, spec_name="tiny", repeats=1, pinned=None).splitlines()[:-1]
    assert all(line.startswith("#") for line in header)
    script = slurm.files[SBATCH_FILE].splitlines()
    sbatch_header = script[: script.index("set -eo pipefail")]
    exports = [line for line in script if line.startswith("export FOO=")]
    bash = "\n".join([*header, *sbatch_header, *exports, 'printf %s "$FOO"'])
    done = subprocess.run(["bash", "-c", bash], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == PWNED.format(marker=marker)
    assert not marker.exists()
    assert subprocess.run(["bash", "-n", "-c", "\n".join(script)]).returncode == 0
