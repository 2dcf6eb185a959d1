"""The built-in model, the optimizer (fused where the device allows) and the LR schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from runner.spec.models import LinearModel, MLPModel, SGDOptimizer, TrainSection

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def build_model(spec: MLPModel | LinearModel) -> nn.Module:
    """An nn.Sequential of Linear layers (with activation and dropout between them)."""
    if isinstance(spec, LinearModel):
        return nn.Sequential(nn.Linear(spec.input_dim, spec.classes))
    layers: list[nn.Module] = []
    width = spec.input_dim
    for hidden in spec.hidden:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[spec.activation]()]
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        width = hidden
    layers.append(nn.Linear(width, spec.classes))
    return nn.Sequential(*layers)


def build_optimizer(model: nn.Module, train: TrainSection) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer and the implementation actually used ('auto' tries fused, then foreach)."""
    spec = train.optimizer
    params = [p for p in model.parameters() if p.requires_grad]

    def make(**impl: bool) -> torch.optim.Optimizer:
        if isinstance(spec, SGDOptimizer):
            return torch.optim.SGD(
                params,
                lr=spec.lr,
                momentum=spec.momentum,
                nesterov=spec.nesterov,
                weight_decay=spec.weight_decay,
                **impl,
            )
        cls = torch.optim.AdamW if spec.kind == "adamw" else torch.optim.Adam
        return cls(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay, **impl)

    choices = {
        "auto": ["fused", "foreach", "for-loop"],
        "fused": ["fused"],
        "foreach": ["foreach"],
        "for-loop": ["for-loop"],
    }[spec.implementation]
    last_error: Exception | None = None
    for choice in choices:
        kwargs = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[choice]
        try:
            return make(**kwargs), choice
        except (RuntimeError, ValueError, TypeError) as exc:  # fused unsupported on this device/dtype
            last_error = exc
    raise RuntimeError(f"optimizer implementation {spec.implementation!r} is not available here: {last_error}")


def lr_multiplier(step: float, *, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate factor after `step` optimizer steps: linear warm-up, then constant/linear/cosine to 0."""
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedule(
    optimizer: torch.optim.Optimizer, train: TrainSection, *, total_steps: int, processes: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over optimizer steps.

    Accelerate's prepared scheduler advances the wrapped scheduler `processes` times per
    optimizer step (it assumes a schedule written for one process), so the lambda divides by it.
    """

    def factor(scheduler_step: int) -> float:
        return lr_multiplier(
            scheduler_step / processes, total=total_steps, warmup=train.warmup_steps, schedule=train.lr_schedule
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
