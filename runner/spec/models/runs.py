"""A run fully resolved: the built-in worker's sections (`RunConfig`) or a script's (`ScriptRunConfig`)."""

from pydantic import (
    Field,
)

from runner.spec.models.base import Strict
from runner.spec.models.data import DataSection
from runner.spec.models.engine import ENGINE_DOC, EngineSection, default_engine
from runner.spec.models.launch import LaunchSection
from runner.spec.models.measure import MeasureSection
from runner.spec.models.network import ModelSection
from runner.spec.models.script import SCRIPT_DOC, ScriptSection
from runner.spec.models.train import TrainSection

TRAIN_DOC = "How to train: epochs or max_steps, batch, accumulation, optimizer, schedule, evaluation."
LAUNCH_DOC = "How `accelerate launch` starts each run: processes, mixed precision, device, GPUs, threads."
MEASURE_DOC = "How timings are taken: repeats, warm-up steps, noise floor, attribution."


class RunConfig(Strict):
    """One run fully resolved: the top-level sections deep-merged with the run's overrides."""

    model: ModelSection
    data: DataSection
    train: TrainSection = Field(description=TRAIN_DOC)
    launch: LaunchSection = Field(
        default_factory=LaunchSection, description=LAUNCH_DOC, json_schema_extra={"default": {}}
    )
    measure: MeasureSection = Field(
        default_factory=MeasureSection, description=MEASURE_DOC, json_schema_extra={"default": {}}
    )
    engine: EngineSection = Field(
        default_factory=default_engine, description=ENGINE_DOC, json_schema_extra={"default": {"kind": "local"}}
    )


class ScriptRunConfig(Strict):
    """One run of a user script, fully resolved: the script, how it is launched and measured."""

    script: ScriptSection = Field(description=SCRIPT_DOC)
    launch: LaunchSection = Field(
        default_factory=LaunchSection, description=LAUNCH_DOC, json_schema_extra={"default": {}}
    )
    measure: MeasureSection = Field(
        default_factory=MeasureSection, description=MEASURE_DOC, json_schema_extra={"default": {}}
    )
    engine: EngineSection = Field(
        default_factory=default_engine, description=ENGINE_DOC, json_schema_extra={"default": {"kind": "local"}}
    )


# The sections of the built-in worker, which a script run leaves out (its script builds its own).
BUILTIN_SECTIONS = ("model", "data", "train")
