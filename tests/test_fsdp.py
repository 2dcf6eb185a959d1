"""FSDP where it can honestly run: declared in the spec, compiled into Accelerate's fsdp_config, refused on a
CPU (Accelerate runs no FSDP there), and observed from inside the ranks as sharded parameters.

The sharding observation runs here on a real two-process gloo group with PyTorch's fully_shard (it
works on a CPU, although Accelerate does not start FSDP there); the whole path through `accelerate
launch` runs on a GPU (tests/test_gpu.py, scripts/gpu-check.sh).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils.launch import prepare_multi_gpu_env

from runner.plan.compile import compile_launch, declared_of
from runner.plan.machine import Machine, free_port
from runner.plan.preflight import preflight
from runner.plan.strategies import STRATEGIES
from runner.plan.worker_plan import Declared, Observed
from runner.report.explain import compute_lines
from runner.spec.models import FSDP_ON_CPU
from runner.spec.validate import validate_text
from runner.verdicts.conformance import mismatches
from runner.verdicts.why_comm import communication_sentence
from runner.worker import sharding
from runner.worker.observe import parameter_hash

CPU_BOX = Machine(cpu_count=2, memory_bytes=16 << 30, launcher=("accelerate", "launch"))
GPU_BOX = Machine(cpu_count=16, memory_bytes=128 << 30, cuda_devices=("NVIDIA H200",) * 2, cuda_bf16=True)

SPEC = """\
name: sharded
model: {kind: transformer, vocab: 64, seq_len: 16, d_model: 32, layers: 2, heads: 2}
data: {kind: synthetic-tokens, samples: 256, vocab: 64, seq_len: 16}
train: {max_steps: 8, batch_size: 8, eval_samples: 16}
launch: {processes: 2}
runs:
  ddp: {}
  fsdp:
    launch: {fsdp: {auto_wrap: transformer}}
  grad-op:
    launch: {fsdp: {version: 1, sharding_strategy: SHARD_GRAD_OP}}
"""


def runs_of(text: str) -> dict[str, Any]:
    validation = validate_text(text)
    assert validation.spec is not None, [d.message for d in validation.diagnostics]
    return dict(validation.spec.runs)


def errors_of(text: str) -> list[tuple[int, str]]:
    return [(d.line, d.message) for d in validate_text(text).diagnostics if d.severity.name == "ERROR"]


def test_fsdp_compiles_into_accelerates_fsdp_config_and_accelerate_launch_reads_it(tmp_path: Path) -> None:
    runs = runs_of(SPEC)
    plan = compile_launch(
        runs["fsdp"], spec_name="sharded", machine=GPU_BOX, directory=tmp_path, port=41000, base_env={}
    )
    config_file = tmp_path / "accelerate_config.yaml"
    config_file.write_text(plan.files["accelerate_config.yaml"])
    config = load_config_from_file(str(config_file))
    assert config.distributed_type == "FSDP"
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "Block"  # the built-in transformer's layer
    assert config.fsdp_config["fsdp_reshard_after_forward"] is True
    # accelerate launch's own parser and environment builder take the file as it is written
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert args.use_fsdp and args.num_processes == 2
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Block"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "true"
    declared = declared_of(runs["fsdp"], GPU_BOX)
    assert (declared.distributed_type, declared.strategy, declared.fsdp_version) == ("FSDP", "fsdp", 2)
    assert declared.fsdp_sharding == "FULL_SHARD"
    grad_op = declared_of(runs["grad-op"], GPU_BOX)
    assert (grad_op.fsdp_version, grad_op.fsdp_sharding) == (1, "SHARD_GRAD_OP")
    assert declared_of(runs["ddp"], GPU_BOX).distributed_type == "MULTI_GPU"


def test_fsdp_on_a_cpu_is_refused_by_validation_and_by_preflight_in_one_line() -> None:
    cpu_spec = SPEC.replace("launch: {processes: 2}", "launch: {processes: 2, device: cpu}")
    errors = errors_of(cpu_spec)
    assert errors and all(FSDP_ON_CPU in message for _, message in errors)
    assert {line for line, _ in errors} == {9, 11}  # each run's launch.fsdp line
    # device auto on a machine without CUDA: preflight refuses the FSDP runs, not the DDP one
    problems, _ = preflight(runs_of(SPEC).values(), CPU_BOX)
    assert len(problems) == 2
    assert all("\n" not in p and "launch.fsdp is set but the run would use the CPU" in p for p in problems)
    assert {p.split("'")[1] for p in problems} == {"fsdp", "grad-op"}
    assert preflight(runs_of(SPEC).values(), GPU_BOX)[0] == []


def test_each_version_keeps_its_own_sharding_words() -> None:
    base = SPEC.split("runs:")[0]
    assert (
        "sharding_strategy is FSDP version 1's"
        in errors_of(base + "runs:\n  a:\n    launch: {fsdp: {sharding_strategy: NO_SHARD}}\n")[0][1]
    )
    assert (
        "reshard_after_forward is FSDP version 2's"
        in errors_of(base + "runs:\n  a:\n    launch: {fsdp: {version: 1, reshard_after_forward: false}}\n")[0][1]
    )
    assert (
        "layer_classes names the layers"
        in errors_of(base + "runs:\n  a:\n    launch: {fsdp: {layer_classes: [Block]}}\n")[0][1]
    )


def test_explain_says_how_the_processes_share_the_training() -> None:
    runs = runs_of(SPEC)
    assert compute_lines(runs["ddp"])[-1].startswith("processes share the training as DDP")
    line = compute_lines(runs["fsdp"])[-1]
    assert "FSDP version 2, FULL_SHARD" in line and "1/2 of the parameters" in line and "(Block)" in line


def test_the_communication_model_knows_fsdps_all_gathers_and_reduce_scatter() -> None:
    gradient_bytes = 4e6
    ddp = STRATEGIES["ddp"].collectives(None, 2, gradient_bytes)
    full = STRATEGIES["fsdp"].collectives("FULL_SHARD", 2, gradient_bytes)
    grad_op = STRATEGIES["fsdp"].collectives("SHARD_GRAD_OP", 2, gradient_bytes)
    total = {name: sum(c.bytes_per_rank for c in cs) for name, cs in (("ddp", ddp), ("full", full), ("op", grad_op))}
    assert [c.name for c in full] == ["all-gather", "reduce-scatter"]
    assert total["full"] == pytest.approx(1.5 * total["ddp"])  # 3(n-1)/n against 2(n-1)/n
    assert total["op"] == pytest.approx(total["ddp"])
    assert STRATEGIES["fsdp"].collectives("FULL_SHARD", 1, gradient_bytes) == []
    run = {
        "declared": {"strategy": "fsdp", "fsdp_sharding": "FULL_SHARD"},
        "metrics": {"params": 10**6, "processes": 2},
    }
    sentence = communication_sentence(run, 0.002, 0.010)
    assert sentence.startswith("FSDP's gradient reduce-scatter takes 20% of each step (2 ms)")
    assert "all-gather of the parameters, in forward and again in backward, 3.81 MB per process" in sentence


def _declared(**changes: Any) -> Declared:
    base = {
        "device": "cuda",
        "processes": 2,
        "local_processes": 2,
        "distributed_type": "FSDP",
        "mixed_precision": "no",
        "threads_per_process": 8,
        "gradient_accumulation_steps": 1,
        "strategy": "fsdp",
        "fsdp_version": 2,
        "fsdp_sharding": "FULL_SHARD",
    }
    return Declared(**(base | changes))


def _observed(**changes: Any) -> Observed:
    base = {
        "world_size": 2,
        "distributed_type": "FSDP",
        "device": "cuda",
        "mixed_precision": "no",
        "threads_per_process": [8, 8],
        "gradient_accumulation_steps": 1,
        "fsdp_version": 2,
        "local_parameter_share": 0.5,
    }
    return Observed(**(base | changes))


def test_declared_equals_observed_checks_the_distributed_type_and_that_parameters_are_sharded() -> None:
    assert mismatches(_declared(), _observed()) == []
    ddp = mismatches(_declared(), _observed(distributed_type="MULTI_GPU", fsdp_version=None))
    assert ddp == ["expected distributed type FSDP, observed MULTI_GPU (the processes did not form the declared group)"]
    assert "were not sharded" in mismatches(_declared(), _observed(fsdp_version=None))[0]
    assert "Accelerate ran FSDP version 1" in mismatches(_declared(), _observed(fsdp_version=1))[0]
    assert "held all of them" in mismatches(_declared(), _observed(local_parameter_share=1.0))[0]
    # one process holds everything by design, and so does version 1's NO_SHARD
    assert (
        mismatches(_declared(processes=1, local_processes=1), _observed(world_size=1, local_parameter_share=1.0)) == []
    )


def _on_two_ranks(probe: Any) -> list[tuple[Any, ...]]:
    """Run `probe(rank)` on each rank of a real 2-process gloo group (spawned); their results, by rank."""
    context = mp.get_context("spawn")
    results = context.Queue()
    port = free_port()
    processes = [context.Process(target=_rank, args=(probe, rank, 2, port, results)) for rank in range(2)]
    for process in processes:
        process.start()
    seen = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return seen


def _rank(probe: Any, rank: int, world: int, port: int, results: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        results.put((rank, *probe()))
    finally:
        dist.destroy_process_group()
    # End as runner/worker/__main__.py does, without the interpreter's shutdown: a spawned process exits
    # through sys.exit, and gloo's threads can still hold tensors of the last collective then, so a rank
    # that did its work aborts ("terminate called without an active exception", seen once in CI). The
    # result is flushed to the parent first; a probe that raised never gets here and exits 1.
    results.close()
    results.join_thread()
    os._exit(0)


def _sharding_facts() -> tuple[Any, ...]:
    from torch.distributed.fsdp import fully_shard

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    elements = sum(p.numel() for p in model.parameters())
    whole_hash = parameter_hash(model)
    before = sharding.fsdp_version(model)
    fully_shard(model)
    model(torch.randn(8, 16)).sum().backward()  # a real step through the shards
    share = sharding.local_parameter_share(model, elements)
    return before, sharding.fsdp_version(model), share, whole_hash, parameter_hash(model)


@pytest.mark.slow
def test_sharded_parameters_are_observed_on_a_real_two_process_group() -> None:
    for _rank_index, before, after, share, whole_hash, sharded_hash in _on_two_ranks(_sharding_facts):
        assert (before, after) == (None, 2)
        assert share == pytest.approx(0.5, abs=0.01)
        # parameter_hash gathers the shards: the same on every rank, and no optimizer step changed them
        assert sharded_hash == whole_hash


def _memory_parts() -> tuple[Any, ...]:
    from torch.distributed.fsdp import fully_shard

    from runner.worker.memory import step_peak_bytes, training_memory

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 4))
    whole = sum(p.numel() * 4 for p in model.parameters())
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(8, 64)

    def step() -> None:
        model(inputs).sum().backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # the optimizer state exists from the first step on
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    parts = training_memory(
        step,
        parameters=model.parameters(),
        optimizer_state=state,
        data=[inputs],
        optimizer=optimizer,
        step_peak=step_peak_bytes,
    )
    return whole, parts.parameters, parts.gradients, parts.optimizer_state


@pytest.mark.slow
def test_training_memory_counts_the_shard_each_process_holds() -> None:
    for _rank_index, whole, parameters, gradients, optimizer_state in _on_two_ranks(_memory_parts):
        # each process holds half of the parameters, their gradients, and AdamW's two moments of them
        assert parameters == pytest.approx(whole / 2, rel=0.05)
        assert gradients == pytest.approx(whole / 2, rel=0.05)
        assert optimizer_state == pytest.approx(whole, rel=0.05)
