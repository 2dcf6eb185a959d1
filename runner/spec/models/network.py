"""The `model` section: the built-in networks a run trains (MLP, linear, transformer, Hugging Face)."""

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from runner.spec.models.base import Strict, rule_broken


class MLPModel(Strict):
    """A multi-layer perceptron: Linear -> activation (-> dropout) for each hidden width, then a Linear head."""

    kind: Literal["mlp"] = Field(description="Built-in model: a multi-layer perceptron.")
    input_dim: int = Field(
        ge=1, le=1_000_000, description="Width of the input; must equal data.features.", examples=[128]
    )
    hidden: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default=[256, 256],
        max_length=64,
        description="Widths of the hidden layers, in order. [4096, 4096, 2560] with input 1024 is ~31.5M parameters.",
        examples=[[256, 256], [4096, 4096, 2560]],
    )
    classes: int = Field(
        ge=2, le=1_000_000, description="Number of output classes; must equal data.classes.", examples=[10]
    )
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        default="relu", description="Activation after each hidden layer."
    )
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout probability after each activation (0 disables it)."
    )


class LinearModel(Strict):
    """A single Linear layer (the Day 5 smoke-test model)."""

    kind: Literal["linear"] = Field(description="Built-in model: one Linear layer from input to classes.")
    input_dim: int = Field(
        ge=1, le=1_000_000, description="Width of the input; must equal data.features.", examples=[10]
    )
    classes: int = Field(ge=2, le=1_000_000, description="Number of outputs; must equal data.classes.", examples=[10])


class TransformerModel(Strict):
    """A decoder-only transformer (pre-norm blocks of causal self-attention and an MLP) over token ids."""

    kind: Literal["transformer"] = Field(
        description="Built-in model: a decoder-only (GPT-style) transformer predicting each next token."
    )
    vocab: int = Field(
        ge=2, le=1_000_000, description="Vocabulary size (token ids 0..vocab-1); must equal data.vocab.", examples=[256]
    )
    seq_len: int = Field(
        ge=2, le=65536, description="Context length in tokens; must equal data.seq_len.", examples=[64, 1024]
    )
    d_model: int = Field(
        ge=1, le=65536, description="Width of the embeddings and of every block; a multiple of heads.", examples=[128]
    )
    layers: int = Field(ge=1, le=256, description="Number of transformer blocks.", examples=[2, 12])
    heads: int = Field(ge=1, le=1024, description="Attention heads per block; must divide d_model.", examples=[4])
    ffn: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Hidden width of each block's MLP (default: 4 x d_model, as in GPT-2).",
    )
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout probability in every block (0 disables it)."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerModel":
        if self.d_model % self.heads:
            raise rule_broken(
                f"d_model {self.d_model} is not a multiple of heads {self.heads}: each head gets d_model / heads "
                "dimensions",
                "heads",
            )
        return self


class HuggingFaceModel(Strict):
    """A Hugging Face `transformers` causal language model built from a config (random weights, nothing downloaded)."""

    kind: Literal["huggingface"] = Field(
        description="A `transformers` model from its config class and from_config (needs: pip install 'accel-run[hf]')."
    )
    family: Literal["gpt2"] = Field(
        default="gpt2", description="The model family: its config class (GPT2Config) and architecture."
    )
    vocab: int = Field(ge=2, le=1_000_000, description="vocab_size; must equal data.vocab.", examples=[50257])
    seq_len: int = Field(
        ge=2, le=65536, description="n_positions, the context length; must equal data.seq_len.", examples=[1024]
    )
    d_model: int = Field(ge=1, le=65536, description="n_embd; a multiple of heads.", examples=[768])
    layers: int = Field(ge=1, le=256, description="n_layer: number of transformer blocks.", examples=[12])
    heads: int = Field(ge=1, le=1024, description="n_head; must divide d_model.", examples=[12])
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="resid_pdrop, embd_pdrop and attn_pdrop (0 disables dropout)."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "HuggingFaceModel":
        if self.d_model % self.heads:
            raise rule_broken(f"d_model {self.d_model} is not a multiple of heads {self.heads}", "heads")
        return self


ModelSection = Annotated[
    MLPModel | LinearModel | TransformerModel | HuggingFaceModel,
    Field(
        discriminator="kind",
        description="The network to train. `kind` picks a built-in model; its fields follow.",
    ),
]
