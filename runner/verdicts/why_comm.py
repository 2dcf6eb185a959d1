"""The Why's communication model: what each launch strategy's collectives move per optimizer step.

DDP all-reduces the gradients: a ring sends 2(n-1)/n of them per process. FSDP all-gathers the
parameters before forward (and again before backward when it reshards, FULL_SHARD's way) and
reduce-scatters the gradients, (n-1)/n each: 1.5x DDP's volume with FULL_SHARD, the same with
SHARD_GRAD_OP. The probe times synchronisation as the step's excess over `no_sync`: under FSDP that
is the reduce-scatter alone, the all-gathers run inside forward and backward. The strategies
themselves (runner.plan.strategies) hold the arithmetic.
"""

from __future__ import annotations

from typing import Any

from runner.metrics import MIB
from runner.plan.strategies import STRATEGIES, Collective


def collectives_of(run: dict[str, Any]) -> list[Collective]:
    """A run's collectives per optimizer step, from its declared strategy, world and parameter count."""
    declared, metrics = run.get("declared") or {}, run.get("metrics") or {}
    strategy = STRATEGIES.get(str(declared.get("strategy", "ddp")))
    params, world = metrics.get("params"), metrics.get("processes") or declared.get("processes") or 1
    if strategy is None or not isinstance(params, int | float) or not isinstance(world, int):
        return []
    return strategy.collectives(declared.get("fsdp_sharding"), world, float(params) * 4)


def communication_sentence(run: dict[str, Any], comm_s: float, step_s: float) -> str:
    """How much of the step the gradient synchronisation takes, in the words of the run's strategy."""
    share = f"{comm_s / step_s:.0%} of each step ({comm_s * 1000:.3g} ms"
    collectives = collectives_of(run)
    if (run.get("declared") or {}).get("strategy") != "fsdp":
        return f"gradient synchronisation takes {share} per all-reduce of the gradients)"
    moved = "; ".join(f"{c.name} of {c.moves}, {c.bytes_per_rank / MIB:.3g} MB per process" for c in collectives)
    return (
        f"FSDP's gradient reduce-scatter takes {share}); its parameter all-gathers run inside forward and "
        f"backward, so they count as compute here. Per optimizer step: {moved or 'nothing, on one process'}"
    )
