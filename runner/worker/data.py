"""Synthetic classification data: Gaussian inputs labelled by a fixed random teacher network."""

from __future__ import annotations

import torch

from runner.spec.models import SyntheticClassification


def teacher_labels(inputs: torch.Tensor, spec: SyntheticClassification, generator: torch.Generator) -> torch.Tensor:
    """Labels from a random teacher (one tanh hidden layer, or linear): learnable, not trivial."""
    features = inputs.shape[1]
    if spec.teacher_hidden:
        w1 = torch.randn(features, spec.teacher_hidden, generator=generator) / features**0.5
        w2 = torch.randn(spec.teacher_hidden, spec.classes, generator=generator) / spec.teacher_hidden**0.5
        scores = torch.tanh(inputs @ w1) @ w2
    else:
        scores = inputs @ (torch.randn(features, spec.classes, generator=generator) / features**0.5)
    labels: torch.Tensor = scores.argmax(dim=1)
    return labels


def make_dataset(
    spec: SyntheticClassification, train_samples: int, eval_samples: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train inputs, train labels, eval inputs, eval labels), identical on every process (seeded)."""
    generator = torch.Generator().manual_seed(spec.seed)
    total = train_samples + eval_samples
    inputs = torch.randn(total, spec.features, generator=generator)
    labels = teacher_labels(inputs, spec, generator)
    if spec.label_noise > 0:
        flip = torch.rand(total, generator=generator) < spec.label_noise
        labels = torch.where(flip, torch.randint(0, spec.classes, (total,), generator=generator), labels)
    return inputs[:train_samples], labels[:train_samples], inputs[train_samples:], labels[train_samples:]
