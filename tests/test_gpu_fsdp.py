"""On a GPU machine (skipped elsewhere): FSDP through `accelerate launch`'s own path, as a user declares it.

One process is enough to show the path works: Accelerate starts FSDP through torchrun even for one
process, so the run is distributed_type FSDP with DTensor parameters (each rank's share is 1/world:
1.0 here). With two or more GPUs the 2-process runs shard for real and are compared with DDP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (this machine has none)"),
]

SPEC = """\
name: gpu-fsdp
model: {kind: transformer, vocab: 4096, seq_len: 256, d_model: 512, layers: 4, heads: 8}
data: {kind: synthetic-tokens, samples: 4096, vocab: 4096, seq_len: 256}
train: {max_steps: 60, batch_size: 16, eval_samples: 256}
launch: {device: cuda, timeout_s: 120}
measure: {repeats: 1}
baseline: ddp
runs:
  ddp: {}
  fsdp:
    launch: {fsdp: {auto_wrap: transformer}}
  fsdp-2:
    launch: {processes: 2, fsdp: {auto_wrap: transformer}}
  ddp-2:
    launch: {processes: 2}
expect:
  - {kind: ratio, title: FSDP on 2 GPUs holds <= 0.8x DDP's peak memory, run: fsdp-2, baseline: ddp-2,
     metric: peak_memory_mb, at_most: 0.8}
  - {kind: close, title: FSDP learns as DDP does, run: fsdp, baseline: ddp, metric: final_loss, rel_tol: 0.05}
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("fsdp")
    spec = base / "gpu-fsdp.yaml"
    spec.write_text(SPEC)
    done = run_cli(str(spec), "--output", str(base / "results"), "--no-progress", timeout=600)
    print(done.stdout)
    print(done.stderr[-4000:])
    (folder,) = (base / "results" / "gpu-fsdp").iterdir()
    return {"done": done, "summary": json.loads((folder / "summary.json").read_text()), "folder": Path(folder)}


def test_an_fsdp_run_is_fsdp_with_sharded_parameters(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    fsdp = runs["fsdp"]
    assert fsdp["status"] == "ok", result["done"].stderr
    observed = fsdp["observed"]
    assert observed["distributed_type"] == "FSDP"
    assert observed["fsdp_version"] == 2
    assert observed["local_parameter_share"] == pytest.approx(1 / observed["world_size"], abs=0.02)
    assert runs["ddp"]["observed"].get("fsdp_version") is None
    config = (result["folder"] / "fsdp" / "accelerate_config.yaml").read_text()
    assert "distributed_type: FSDP" in config and "fsdp_version: 2" in config


def test_two_process_runs_shard_or_are_skipped_on_one_gpu(result: dict[str, Any]) -> None:
    runs = result["summary"]["runs"]
    if torch.cuda.device_count() < 2:
        assert runs["fsdp-2"]["status"] == "skipped"
        assert "needs 2 GPUs" in runs["fsdp-2"]["reason"]
    else:
        assert runs["fsdp-2"]["observed"]["local_parameter_share"] == pytest.approx(0.5, abs=0.02)
        verdicts = {v["title"]: v["verdict"] for v in result["summary"]["expectations"]}
        assert verdicts["FSDP on 2 GPUs holds <= 0.8x DDP's peak memory"] in ("pass", "fail")
