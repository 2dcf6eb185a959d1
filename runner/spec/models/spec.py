"""The whole spec: run overrides, the matrix and `ExperimentSpec`, the document's top level."""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic.json_schema import SkipJsonSchema

from runner.spec.models.base import FORMAT_VERSION, MAX_CELLS, NAME_RULE, REFERENCE_MARK, Name, Strict
from runner.spec.models.data import DataSection
from runner.spec.models.engine import ENGINE_DOC, EngineSection, default_engine
from runner.spec.models.expect import Cells, Expectation, WarningName, acknowledge_field
from runner.spec.models.launch import LaunchSection
from runner.spec.models.measure import MeasureSection
from runner.spec.models.network import ModelSection
from runner.spec.models.runs import LAUNCH_DOC, MEASURE_DOC, TRAIN_DOC
from runner.spec.models.script import SCRIPT_DOC, ScriptSection
from runner.spec.models.train import TrainSection

# An override is checked after merging, against the full section, so errors in it are located at
# the override's own lines. Its editor schema is the section's schema with every key optional
# (schema.py derives it), marked here by OVERRIDE_MARK.
Override = dict[str, Any] | None
OVERRIDE_MARK = "x-accel-run-override-of"


def _override_of(section: str) -> dict[str, Any]:
    return {OVERRIDE_MARK: section}


class RunOverride(Strict):
    """A run: partial sections deep-merged over the top-level ones (null removes a key)."""

    description: str = Field(default="", max_length=1000, description="What this run varies, for the report.")
    acknowledge: list[WarningName] = acknowledge_field("this run")
    extends: Name | None = Field(
        default=None,
        description="Another run this one starts from: that run's overrides apply first, this run's on top "
        "(chains allowed, cycles not).",
        json_schema_extra={REFERENCE_MARK: "name"},
    )
    model: Override = Field(
        default=None,
        description="Overrides of the top-level model section (a different `kind` replaces it).",
        json_schema_extra=_override_of("model"),
    )
    data: Override = Field(
        default=None, description="Overrides of the top-level data section.", json_schema_extra=_override_of("data")
    )
    train: Override = Field(
        default=None, description="Overrides of the top-level train section.", json_schema_extra=_override_of("train")
    )
    launch: Override = Field(
        default=None, description="Overrides of the top-level launch section.", json_schema_extra=_override_of("launch")
    )
    measure: Override = Field(
        default=None,
        description="Overrides of the top-level measure section.",
        json_schema_extra=_override_of("measure"),
    )
    engine: Override = Field(
        default=None,
        description="Overrides of the top-level engine section (a different `kind` replaces it).",
        json_schema_extra=_override_of("engine"),
    )
    script: Override = Field(
        default=None,
        description="Overrides of the top-level script section (its args, say); null removes it.",
        json_schema_extra=_override_of("script"),
    )


class MatrixSection(BaseModel):
    """A grid of runs, as in a CI matrix: every combination of the listed values is a run (a cell)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True, title="Matrix", defer_build=True)
    __pydantic_extra__: dict[
        str, Annotated[list[Any], Field(min_length=1, max_length=MAX_CELLS, title="Values of a setting")]
    ] = Field(init=False)

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        title="Cell name template",
        description="How cells are named, with {key} for a value, e.g. 'accum-{gradient_accumulation_steps}'. "
        "Default: key=value for each matrix key, joined by commas ('processes=2,mixed_precision=bf16').",
        examples=["p{processes}-{mixed_precision}"],
    )
    include: list[Cells] = Field(
        default=[],
        max_length=MAX_CELLS,
        title="Cells to add or extend",
        description="Each entry adds its values to every cell whose matrix values it matches (its other keys "
        "are added, never overwriting a matrix value); an entry that matches no cell is a new cell.",
        examples=[[{"train.gradient_accumulation_steps": 4, "train.batch_size": 16}]],
    )
    exclude: list[Cells] = Field(
        default=[],
        max_length=MAX_CELLS,
        title="Cells to leave out",
        description="Each entry removes every cell whose matrix values match all of its values.",
        examples=[[{"launch.processes": 2, "launch.mixed_precision": "bf16"}]],
    )


_MATRIX_DOC = (
    f"Runs as a grid: settings (launch.processes, or a key of one section such as mixed_precision) -> lists of "
    f"values; every combination becomes a run over the top-level sections (at most {MAX_CELLS})."
)


class ExperimentSpec(Strict):
    """An accel-run experiment: the base configuration, the runs that vary it, the results expected."""

    # Either the built-in worker's sections or a script: each run is then checked as a RunConfig or a
    # ScriptRunConfig (validate.py), which is where a missing section is reported.
    model_config = ConfigDict(
        title="accel-run experiment spec",
        json_schema_extra={"anyOf": [{"required": ["model", "data", "train"]}, {"required": ["script"]}]},
    )

    version: Literal[1] = Field(default=FORMAT_VERSION, description="Spec format version. This is version 1.")
    name: Name = Field(description=f"Experiment name; results go to results/<name>/. {NAME_RULE}.", examples=["day6"])
    description: str = Field(default="", max_length=10_000, description="What the experiment is for.")
    script: ScriptSection | SkipJsonSchema[None] = Field(default=None, description=SCRIPT_DOC)
    model: ModelSection | SkipJsonSchema[None] = None
    data: DataSection | SkipJsonSchema[None] = None
    train: TrainSection | SkipJsonSchema[None] = Field(default=None, description=TRAIN_DOC)
    launch: LaunchSection = Field(
        default_factory=LaunchSection, description=LAUNCH_DOC, json_schema_extra={"default": {}}
    )
    measure: MeasureSection = Field(
        default_factory=MeasureSection, description=MEASURE_DOC, json_schema_extra={"default": {}}
    )
    engine: EngineSection = Field(
        default_factory=default_engine, description=ENGINE_DOC, json_schema_extra={"default": {"kind": "local"}}
    )
    baseline: Name | None = Field(
        default=None,
        description="The run other runs are reported against (default: the first run), and the baseline of "
        "every expectation that names none.",
        json_schema_extra={REFERENCE_MARK: "name"},
    )
    matrix: MatrixSection | None = Field(default=None, description=_MATRIX_DOC)
    runs: dict[Name, RunOverride] = Field(
        default={},
        description="Run name -> overrides of model/data/train/launch/measure. "
        "No runs = one run named 'main' with the top-level sections.",
        examples=[{"single": {}, "dual": {"launch": {"processes": 2}}}],
    )
    expect: list[Expectation] = Field(
        default=[], max_length=1000, description="Results you expect; each is checked and reported."
    )
    acknowledge: list[WarningName] = acknowledge_field("the whole spec: every run and expectation")
