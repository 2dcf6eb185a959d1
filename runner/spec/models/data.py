"""The `data` section: the built-in synthetic data sets."""

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from runner.spec.models.base import Strict


class SyntheticClassification(Strict):
    """Gaussian inputs labelled by a fixed random teacher network, so accuracy can really rise."""

    kind: Literal["synthetic-classification"] = Field(
        description="Random inputs with labels from a fixed random teacher network (learnable, reproducible)."
    )
    samples: int = Field(
        ge=1,
        le=1_000_000_000,
        description="Training samples (eval samples come on top, see train.eval_samples).",
        examples=[10000, 50000],
    )
    features: int = Field(ge=1, le=1_000_000, description="Input width; must equal model.input_dim.", examples=[128])
    classes: int = Field(
        ge=2, le=1_000_000, description="Number of label classes; must equal model.classes.", examples=[10]
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the inputs and of the teacher network.")
    teacher_hidden: int = Field(
        default=64,
        ge=0,
        le=65536,
        description="Hidden width of the teacher that assigns labels; 0 makes a linear teacher (an easier task).",
    )
    label_noise: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Fraction of labels replaced by random classes (0 = clean labels)."
    )


class SyntheticTokens(Strict):
    """Token sequences that follow a fixed random next-token rule, with noise, so a language model's loss can fall."""

    kind: Literal["synthetic-tokens"] = Field(
        description="Random token sequences in which each token follows from the one before by a fixed seeded "
        "rule (a permutation of the vocabulary), except a `noise` share of random tokens (learnable, reproducible)."
    )
    samples: int = Field(
        ge=1,
        le=1_000_000_000,
        description="Training sequences (eval sequences come on top, see train.eval_samples).",
        examples=[2048],
    )
    vocab: int = Field(ge=2, le=1_000_000, description="Vocabulary size; must equal model.vocab.", examples=[256])
    seq_len: int = Field(ge=2, le=65536, description="Tokens per sequence; must equal model.seq_len.", examples=[64])
    noise: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of tokens drawn at random instead of by the rule (the loss cannot fall below its entropy).",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the sequences and of the rule.")


DataSection = Annotated[
    SyntheticClassification | SyntheticTokens,
    Field(
        discriminator="kind",
        description="The training data. `kind` picks a built-in data set; its fields follow.",
    ),
]
