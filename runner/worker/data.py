"""Synthetic data: Gaussian inputs labelled by a fixed random teacher network, or token sequences
that follow a fixed random next-token rule with noise. Both are learnable and seeded."""

from __future__ import annotations

import torch

from runner.spec.models import SyntheticClassification, SyntheticTokens

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


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


def make_dataset(spec: SyntheticClassification | SyntheticTokens, train_samples: int, eval_samples: int) -> Tensors:
    """(train inputs, train labels, eval inputs, eval labels), identical on every process (seeded)."""
    if isinstance(spec, SyntheticTokens):
        return token_dataset(spec, train_samples, eval_samples)
    generator = torch.Generator().manual_seed(spec.seed)
    total = train_samples + eval_samples
    inputs = torch.randn(total, spec.features, generator=generator)
    labels = teacher_labels(inputs, spec, generator)
    if spec.label_noise > 0:
        flip = torch.rand(total, generator=generator) < spec.label_noise
        labels = torch.where(flip, torch.randint(0, spec.classes, (total,), generator=generator), labels)
    return inputs[:train_samples], labels[:train_samples], inputs[train_samples:], labels[train_samples:]


def token_dataset(spec: SyntheticTokens, train_samples: int, eval_samples: int) -> Tensors:
    """Sequences of seq_len + 1 tokens: inputs are the first seq_len, labels the next token at each position.

    Each token is the rule's successor of the one before (a seeded permutation of the vocabulary), except
    a `noise` share drawn uniformly: a model that learns the rule reaches about the noise's entropy,
    from ln(vocab) at the start. Labels are (samples, seq_len), so cross_entropy and accuracy count tokens.
    """
    generator = torch.Generator().manual_seed(spec.seed)
    rule = torch.randperm(spec.vocab, generator=generator)
    total, length = train_samples + eval_samples, spec.seq_len + 1
    random_tokens = torch.randint(0, spec.vocab, (total, length), generator=generator)
    noisy = torch.rand(total, length, generator=generator) < spec.noise
    sequences = torch.empty(total, length, dtype=torch.long)
    sequences[:, 0] = random_tokens[:, 0]
    for position in range(1, length):
        sequences[:, position] = torch.where(
            noisy[:, position], random_tokens[:, position], rule[sequences[:, position - 1]]
        )
    inputs, labels = sequences[:, :-1].contiguous(), sequences[:, 1:].contiguous()
    return inputs[:train_samples], labels[:train_samples], inputs[train_samples:], labels[train_samples:]
