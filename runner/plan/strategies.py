"""Launch strategies: how several processes share the training (DDP, FSDP), one registry.

A strategy knows what a shared stage asks of it, and nothing else does:
- the distributed type Accelerate must be observed to run (declared = observed);
- its entries in the compiled Accelerate config (distributed_type, fsdp_config);
- why it cannot run on a device (preflight says it in one line);
- what its collectives move per optimizer step (the Why's communication model).

A new strategy (DeepSpeed, say) is one class here, registered in STRATEGIES, plus its spec section
in spec/models.py; compile, preflight and the Why ask the registry. Light on purpose: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from runner.spec.models import FSDP_ON_CPU, FsdpSection, LaunchSection


@dataclass(frozen=True)
class Collective:
    """One collective of a step: its name, what it moves, and the bytes each rank sends (ring algorithms)."""

    name: str
    moves: str
    bytes_per_rank: float


class Strategy(Protocol):
    name: str

    def distributed_type(self, processes: int, device: str) -> str:
        """Accelerate's DistributedType name a correct launch runs with."""
        ...

    def config_entries(self, launch: LaunchSection, *, builtin_transformer: bool) -> dict[str, Any]:
        """Keys of the Accelerate config this strategy sets (over the plain config's)."""
        ...

    def refusal(self, device: str, where: str) -> str:
        """Why it cannot run on `device` ('' when it can); `where` says where that device is ("on this machine")."""
        ...

    def collectives(self, sharding: str | None, world: int, gradient_bytes: float) -> list[Collective]:
        """What the ranks exchange per optimizer step, for gradients of `gradient_bytes` in all.

        `sharding` is Declared.fsdp_sharding (None without FSDP).
        """
        ...


def _ring(world: int) -> float:
    """The share of a buffer each rank sends in a ring all-gather or reduce-scatter: (n-1)/n."""
    return (world - 1) / world if world > 1 else 0.0


class DataParallel:
    """DDP: every process holds the whole model and all-reduces the gradients (Accelerate's default)."""

    name = "ddp"

    def distributed_type(self, processes: int, device: str) -> str:
        if processes == 1:
            return "NO"
        return "MULTI_CPU" if device == "cpu" else "MULTI_GPU"

    def config_entries(self, launch: LaunchSection, *, builtin_transformer: bool) -> dict[str, Any]:
        # Several CPU processes need the multi-process launcher too; ACCELERATE_USE_CPU in the
        # environment (see command.txt) turns them into a gloo MULTI_CPU group.
        return {"distributed_type": "NO" if launch.processes == 1 else "MULTI_GPU"}

    def refusal(self, device: str, where: str) -> str:
        return ""

    def collectives(self, sharding: str | None, world: int, gradient_bytes: float) -> list[Collective]:
        if world <= 1:
            return []
        return [Collective("all-reduce", "the gradients", 2 * _ring(world) * gradient_bytes)]


WRAP_POLICIES = {"none": "NO_WRAP", "size": "SIZE_BASED_WRAP", "transformer": "TRANSFORMER_BASED_WRAP"}
BUILTIN_LAYER = "Block"  # the built-in transformer's layer class (runner.worker.build)


class FullySharded:
    """FSDP: parameters, gradients and optimizer state sharded over the processes (launch.fsdp)."""

    name = "fsdp"

    def distributed_type(self, processes: int, device: str) -> str:
        return "FSDP"  # one process too: accelerate launch starts FSDP through torchrun

    def config_entries(self, launch: LaunchSection, *, builtin_transformer: bool) -> dict[str, Any]:
        fsdp = _fsdp(launch)
        config: dict[str, Any] = {
            "fsdp_version": fsdp.version,
            "fsdp_auto_wrap_policy": WRAP_POLICIES[fsdp.auto_wrap],
            "fsdp_state_dict_type": fsdp.state_dict_type,
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": False,
            "fsdp_sync_module_states": False,
        }
        if fsdp.version == 1:
            config["fsdp_sharding_strategy"] = fsdp.sharding_strategy or "FULL_SHARD"
            config["fsdp_reshard_after_forward"] = fsdp.sharding_strategy or "FULL_SHARD"
        else:
            config["fsdp_reshard_after_forward"] = fsdp.reshard_after_forward is not False
        if fsdp.auto_wrap == "size":
            config["fsdp_min_num_params"] = fsdp.min_params
        layers = fsdp.layer_classes or ([BUILTIN_LAYER] if builtin_transformer else [])
        if fsdp.auto_wrap == "transformer" and layers:
            config["fsdp_transformer_layer_cls_to_wrap"] = ",".join(layers)
        return {"distributed_type": "FSDP", "fsdp_config": config}

    def refusal(self, device: str, where: str) -> str:
        if device != "cpu":
            return ""
        return f"launch.fsdp is set but the run would use the CPU {where}; {FSDP_ON_CPU}"

    def collectives(self, sharding: str | None, world: int, gradient_bytes: float) -> list[Collective]:
        if world <= 1:
            return []
        if sharding == "NO_SHARD":
            return [Collective("all-reduce", "the gradients (NO_SHARD is DDP)", 2 * _ring(world) * gradient_bytes)]
        # The parameters are the size of the gradients (both fp32 under Accelerate's autocast). HYBRID_SHARD
        # shards within a node: on one node it moves what FULL_SHARD does.
        gathers = 1 if sharding == "SHARD_GRAD_OP" else 2
        return [
            Collective(
                "all-gather",
                "the parameters, in forward and again in backward" if gathers == 2 else "the parameters, once",
                gathers * _ring(world) * gradient_bytes,
            ),
            Collective("reduce-scatter", "the gradients", _ring(world) * gradient_bytes),
        ]


def _fsdp(launch: LaunchSection) -> FsdpSection:
    if launch.fsdp is None:
        raise ValueError("the FSDP strategy needs launch.fsdp")
    return launch.fsdp


STRATEGIES: dict[str, Strategy] = {strategy.name: strategy for strategy in (DataParallel(), FullySharded())}


def strategy_of(launch: LaunchSection) -> Strategy:
    """The strategy a launch section declares: FSDP with launch.fsdp, else DDP."""
    return STRATEGIES["fsdp" if launch.fsdp is not None else "ddp"]
