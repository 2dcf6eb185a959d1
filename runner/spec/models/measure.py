"""The `measure` section: how timings are taken (repeats, warm-up, blocks, fitness to time, noise floor)."""

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from runner.spec.models.base import Strict


class MeasureSection(Strict):
    """How timings are taken: repeats, warm-up, what makes a repeat fit to time, noise floor."""

    repeats: Annotated[int, Field(ge=1, le=1000)] | Literal["auto"] = Field(
        default="auto",
        description="Separate launches of each run. auto (the default): launch interleaved repeats until every "
        "timing verdict is decided, or max_repeats or max_time_s is spent; a number fixes the count. "
        "Runs compared by an expectation are interleaved (A B A B ...).",
        examples=["auto", 5],
    )
    max_repeats: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="With repeats: auto, the most launches of one run (disturbed ones count).",
    )
    max_time_s: float = Field(
        default=600,
        gt=0,
        le=7 * 86400,
        description="With repeats: auto, no new repeat of a run starts once its launches took this long in all "
        "(seconds, launch to exit).",
    )
    warmup_steps: int = Field(
        default=3, ge=0, le=1_000_000, description="Optimizer steps at the start excluded from the timed part."
    )
    block_s: float = Field(
        default=0.02,
        gt=0,
        le=3600,
        description="The timed part is cut into blocks of whole optimizer steps at least this long (seconds), "
        "each closed by one device synchronisation; the launch's speed is the median block rate.",
    )
    min_blocks: int = Field(
        default=10,
        ge=2,
        le=100_000,
        description="A launch with fewer blocks than this cannot decide a timing verdict (it is unfit to time).",
    )
    max_spread: float = Field(
        default=0.5,
        gt=0,
        le=100,
        description="A launch whose block rates spread more than this (IQR/median, 0.5 = 50%), or whose two "
        "halves differ by more than this, is unfit to time: the machine changed while it was timed (halves "
        "closer than that widen the launch's interval instead).",
    )
    extend_share: float = Field(
        default=0.5,
        ge=0,
        le=100,
        description="When the declared training gives too few blocks (or too loose an estimate), timing-only "
        "steps after it (same data and settings, never in loss or accuracy) extend the timed part: up to "
        "measure.min_blocks whatever they cost, beyond that for at most this share of what the launch has cost "
        "so far (another launch would cost all of it again). 0 = never.",
    )
    min_duration_s: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="A launch whose timed part is shorter than this (seconds) is unfit to time. null: the blocks "
        "decide (measure.min_blocks); a script run, which reports no blocks, needs 1 s.",
    )
    max_session_s: float | None = Field(
        default=None,
        gt=0,
        le=30 * 86400,
        description="With repeats: auto, no new round of repeats starts once the session has run this long "
        "(seconds); the report says which verdicts were left undecided by it. null = no session limit.",
        examples=[300],
    )
    max_disturbance: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="A repeat during whose timed part other processes took more than this share of the CPU "
        "cores (0.10 = 10%), or whose timed step took over 3x the same step probed after training, is disturbed: "
        "it is repeated, never averaged in. 1 accepts any load (and the spread and drift it causes: "
        "measure.max_spread is not applied then).",
    )
    noise_floor: float = Field(
        default=0.03,
        ge=0,
        lt=1,
        description="Relative noise assumed beyond the measured spread (0.03 = 3%); a bound closer than this "
        "to the measurement is 'inconclusive'.",
    )
    attribution: bool = Field(
        default=True,
        description="After training, time compute, gradient sync, data and optimizer per step, "
        "so a missing speedup comes with its reason.",
    )
