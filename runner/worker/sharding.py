"""What FSDP did to the parameters, seen from inside a rank: declared = observed for launch.fsdp.

FSDP2 (fully_shard) turns each parameter into a DTensor whose local part is this rank's shard;
FSDP1 wraps modules in FullyShardedDataParallel, whose flat parameters hold the shards. A run that
declares FSDP but whose parameters are whole on every rank trained as DDP (or alone), and its
memory and speed are not FSDP's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def _dtensor_class() -> Any:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return None
    return DTensor


def _fsdp1_class() -> Any:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return None
    return FullyShardedDataParallel


def fsdp_version(model: torch.nn.Module) -> int | None:
    """2 when parameters are DTensors (fully_shard), 1 under a FullyShardedDataParallel wrapper, else None."""
    dtensor, fsdp1 = _dtensor_class(), _fsdp1_class()
    if dtensor is not None and any(isinstance(p, dtensor) for p in model.parameters()):
        return 2
    if fsdp1 is not None and any(isinstance(m, fsdp1) for m in model.modules()):
        return 1
    return None


def local_parameter_share(model: torch.nn.Module, elements: int) -> float:
    """The share of the model's `elements` parameter elements this rank holds: 1/world evenly sharded, 1.0 whole.

    `elements` is counted before wrapping; under FSDP1 a flat parameter's shard may carry padding.
    """
    dtensor = _dtensor_class()
    local = 0
    for param in model.parameters():
        value: Any = param
        local += value.to_local().numel() if dtensor is not None and isinstance(value, dtensor) else value.numel()
    return local / elements if elements else 1.0


@contextlib.contextmanager
def whole_parameters(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Every parameter whole, on every rank (a collective under FSDP: all ranks must call it together)."""
    dtensor = _dtensor_class()
    if fsdp_version(model) == 1:
        fsdp1 = _fsdp1_class()
        assert fsdp1 is not None
        with fsdp1.summon_full_params(model, writeback=False, recurse=True):
            yield [p.detach() for p in model.parameters()]
        return
    whole: list[torch.Tensor] = []
    for param in model.parameters():
        value: Any = param.detach()
        whole.append(value.full_tensor() if dtensor is not None and isinstance(value, dtensor) else value)
    yield whole
