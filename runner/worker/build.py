"""The built-in models (MLP, linear, decoder-only transformer), the optimizer (fused where the device
allows) and the LR schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from runner.spec.models import (
    HuggingFaceModel,
    LinearModel,
    MLPModel,
    SGDOptimizer,
    TrainSection,
    TransformerModel,
)

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def build_model(spec: MLPModel | LinearModel | TransformerModel | HuggingFaceModel) -> nn.Module:
    """The spec's model: a decoder-only transformer (ours, or a Hugging Face one from its config), or an
    nn.Sequential of Linear layers (with activation and dropout between them)."""
    if isinstance(spec, TransformerModel):
        return DecoderOnly(spec)
    if isinstance(spec, HuggingFaceModel):
        return HuggingFaceLM(spec)
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


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees itself and the positions before it."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)  # q, k and v in one matmul
        self.proj = nn.Linear(width, width)
        self.heads, self.dropout = heads, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        out: torch.Tensor = self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return out


class Block(nn.Module):
    """A pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x)) (GPT-2's layout)."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, ffn), nn.GELU(), nn.Linear(ffn, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))
        out: torch.Tensor = x + self.drop(self.mlp(self.norm2(x)))
        return out


class DecoderOnly(nn.Module):
    """A GPT-style language model in pure torch: token and position embeddings, blocks, a vocabulary head.

    It returns logits as (batch, vocab, seq_len), the class dimension second: F.cross_entropy against
    (batch, seq_len) labels and argmax(dim=1) then score every token, with the same code as the MLP's
    (batch, classes) logits, in the training loop, the probe and the evaluation.
    """

    def __init__(self, spec: TransformerModel) -> None:
        super().__init__()
        width = spec.d_model
        self.tokens = nn.Embedding(spec.vocab, width)
        self.positions = nn.Embedding(spec.seq_len, width)
        self.blocks = nn.ModuleList(
            Block(width, spec.heads, spec.ffn or 4 * width, spec.dropout) for _ in range(spec.layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, spec.vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits.transpose(1, 2)


class HuggingFaceLM(nn.Module):
    """A `transformers` causal LM built from its config class with from_config: random weights, nothing downloaded.

    Returns logits as (batch, vocab, seq_len), as DecoderOnly does, so the same loss and accuracy code applies.
    """

    def __init__(self, spec: HuggingFaceModel) -> None:
        super().__init__()
        try:
            from transformers import AutoModelForCausalLM, GPT2Config
        except ImportError as exc:  # validation says so first; this is for a plan.json run by hand
            raise RuntimeError(
                f"model kind 'huggingface' needs the transformers package: pip install 'accel-run[hf]' ({exc})"
            ) from None
        config = GPT2Config(
            vocab_size=spec.vocab,
            n_positions=spec.seq_len,
            n_embd=spec.d_model,
            n_layer=spec.layers,
            n_head=spec.heads,
            resid_pdrop=spec.dropout,
            embd_pdrop=spec.dropout,
            attn_pdrop=spec.dropout,
            bos_token_id=None,  # GPT-2's 50256 lies outside a smaller vocabulary; no generation here
            eos_token_id=None,
        )
        self.model = AutoModelForCausalLM.from_config(config)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=tokens, use_cache=False).logits
        return logits.transpose(1, 2)


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
