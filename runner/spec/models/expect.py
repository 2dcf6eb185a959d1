"""Expectations: the results a spec expects (speedup, bound, ratio, close), their metrics, acknowledged warnings."""

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from runner.metrics import metric_doc
from runner.spec.models.base import (
    REFERENCE_MARK,
    RULE_NO_BOUND,
    RULE_NO_TOLERANCE,
    SETTING_PATTERN,
    Name,
    Strict,
    rule_broken,
)

Metric = Literal[
    "train_time_s",
    "startup_s",
    "samples_per_s",
    "tokens_per_s",
    "step_time_ms",
    "final_loss",
    "eval_loss",
    "accuracy",
    "peak_memory_mb",
    "optimizer_steps",
]
METRIC_DOC = metric_doc()  # each metric's help, from runner.metrics' table (tests pin Metric to its names)


# Warnings a spec can acknowledge where they are intended, so `--strict` stays usable: each
# warning's text ends with its name ("[acknowledge: confounded]").
WarningName = Literal[
    "different-work", "confounded", "warmup-too-long", "cuda-visible-devices", "gpu-ids-on-cpu", "many-launches"
]
ACKNOWLEDGE_DOC = (
    "Warnings you intend, by name, so they are not reported (and --strict passes): different-work (a speedup "
    "between runs that train differently), confounded (a speedup between runs that differ in two or more "
    "settings), warmup-too-long, cuda-visible-devices, gpu-ids-on-cpu, many-launches. "
    "Each warning's text ends with its name."
)


def acknowledge_field(scope: str) -> Any:
    """The `acknowledge` list of a scope: the spec, a run or an expectation."""
    return Field(
        default=[], max_length=10, description=f"{ACKNOWLEDGE_DOC} Applies to {scope}.", examples=[["confounded"]]
    )


class _Expectation(Strict):
    title: str | None = Field(
        default=None,
        max_length=200,
        description="How the report names this expectation.",
        examples=["2 processes >= 1.8x faster"],
    )
    acknowledge: list[WarningName] = acknowledge_field("this expectation")


class _Bounded(_Expectation):
    at_least: float | None = Field(default=None, description="Lower bound (inclusive).")
    at_most: float | None = Field(default=None, description="Upper bound (inclusive).")

    @model_validator(mode="after")
    def _one_bound(self) -> "_Bounded":
        if self.at_least is None and self.at_most is None:
            raise rule_broken(RULE_NO_BOUND)
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise rule_broken(f"at_least ({self.at_least}) is larger than at_most ({self.at_most})", "at_least")
        return self


def _ref_kind(value: Any) -> str:
    return "cells" if isinstance(value, dict) else "name"


_CELLS_DOC = (
    "A run's name, or a mapping of settings to values (launch.processes: 2) that selects every run that has them: "
    "the expectation then applies to each, one verdict per run."
)
_TWIN_DOC = (
    "A run's name, or a mapping of settings to values (launch.processes: 1): the twin of each run, i.e. the run "
    "with the same settings except these. Default: the top-level baseline."
)
Cells = Annotated[
    dict[Annotated[str, StringConstraints(pattern=SETTING_PATTERN)], Any],
    Field(min_length=1, title="Settings", description="Settings and their values, e.g. {launch.processes: 2}."),
]
RunRef = Annotated[
    Annotated[Name, Tag("name")] | Annotated[Cells, Tag("cells")],
    Discriminator(_ref_kind),
]
_SETTINGS_REF: dict[str, Any] = {REFERENCE_MARK: "settings"}


class SpeedupExpectation(_Bounded):
    """`run` is at least/at most N times faster than `baseline` for the same work (throughput ratio)."""

    kind: Literal["speedup"] = Field(
        description="Speedup of run over baseline: samples/s of run / samples/s of baseline."
    )
    run: RunRef = Field(description=f"The run expected to be faster. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    baseline: RunRef | None = Field(
        default=None, description=f"The run it is compared with. {_TWIN_DOC}", json_schema_extra=_SETTINGS_REF
    )


class BoundExpectation(_Bounded):
    """A metric of one run lies within bounds."""

    kind: Literal["bound"] = Field(description="An absolute bound on one run's metric.")
    run: RunRef = Field(description=f"The run measured. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    metric: Metric = Field(description=METRIC_DOC, examples=["accuracy"])


class RatioExpectation(_Bounded):
    """metric(run) / metric(baseline) lies within bounds."""

    kind: Literal["ratio"] = Field(description="metric of run divided by metric of baseline, bounded.")
    run: RunRef = Field(description=f"Numerator run. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    baseline: RunRef | None = Field(
        default=None, description=f"Denominator run. {_TWIN_DOC}", json_schema_extra=_SETTINGS_REF
    )
    metric: Metric = Field(description=METRIC_DOC, examples=["peak_memory_mb"])


class CloseExpectation(_Expectation):
    """Two runs reach the same value of a metric within a tolerance."""

    kind: Literal["close"] = Field(description="metric of run is within a tolerance of metric of baseline.")
    run: RunRef = Field(description=f"The run checked. {_CELLS_DOC}", json_schema_extra=_SETTINGS_REF)
    baseline: RunRef | None = Field(
        default=None, description=f"The run it should match. {_TWIN_DOC}", json_schema_extra=_SETTINGS_REF
    )
    metric: Metric = Field(description=METRIC_DOC, examples=["final_loss"])
    rel_tol: float | None = Field(
        default=None, ge=0, le=100, description="Allowed |run - baseline| / |baseline| (0.05 = 5%).", examples=[0.05]
    )
    abs_tol: float | None = Field(default=None, ge=0, description="Allowed |run - baseline|.")

    @model_validator(mode="after")
    def _one_tolerance(self) -> "CloseExpectation":
        if self.rel_tol is None and self.abs_tol is None:
            raise rule_broken(RULE_NO_TOLERANCE)
        return self


# Every kind of expectation; the checks match on it exhaustively (verdicts.check), so a new kind
# that nobody handles is a type error, not a silent fall-through.
AnyExpectation = SpeedupExpectation | BoundExpectation | RatioExpectation | CloseExpectation
Expectation = Annotated[AnyExpectation, Field(discriminator="kind")]
