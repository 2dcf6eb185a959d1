"""Stage 2, spec: the experiment spec as Pydantic models, the single source of truth.

The JSON Schema editors use (`schemas/experiment.schema.json`) is generated from these models, so
every `description` here is hover text in an editor: write it for the person typing the spec.
This package must stay free of torch and accelerate imports (`accel-run --validate` starts fast).

One module per section of a spec, in the order a spec reads: base (names, rules, the strict base
model), network (`model`), data, train, launch, measure, engine, script; then runs (a run resolved),
expect (expectations and metrics) and spec (overrides, the matrix, `ExperimentSpec`). Every public
name is importable from here. The models build their validators when first used (`defer_build`):
`--validate` builds the few it validates with, not every section's on import.
"""

from runner.spec.models.base import (
    FORMAT_VERSION,
    MAX_CELLS,
    NAME_PATTERN,
    NAME_RULE,
    REFERENCE_MARK,
    RULE_ACCURACY_FRACTION,
    RULE_EVAL_BOTH,
    RULE_FP16_ON_CPU,
    RULE_LENGTH_BOTH,
    RULE_LENGTH_NEITHER,
    RULE_NO_BOUND,
    RULE_NO_TOLERANCE,
    RULE_VISIBLE_DEVICES_AND_GPU_IDS,
    SETTING_PATTERN,
    Name,
    Strict,
    rule_broken,
    rule_script_excludes,
    whole_numbers,
)
from runner.spec.models.data import DataSection, SyntheticClassification, SyntheticTokens
from runner.spec.models.engine import (
    ENGINE_DOC,
    SLURM_TIME_PATTERN,
    SLURM_TIME_RULE,
    EngineSection,
    LocalEngineSection,
    SlurmEngineSection,
    SlurmTime,
    default_engine,
)
from runner.spec.models.expect import (
    ACKNOWLEDGE_DOC,
    METRIC_DOC,
    AnyExpectation,
    BoundExpectation,
    Cells,
    CloseExpectation,
    Expectation,
    Metric,
    RatioExpectation,
    RunRef,
    SpeedupExpectation,
    WarningName,
    acknowledge_field,
)
from runner.spec.models.launch import GPU_IDS_PATTERN, CompileSection, GpuIds, LaunchSection
from runner.spec.models.measure import MeasureSection
from runner.spec.models.network import HuggingFaceModel, LinearModel, MLPModel, ModelSection, TransformerModel
from runner.spec.models.runs import BUILTIN_SECTIONS, LAUNCH_DOC, MEASURE_DOC, TRAIN_DOC, RunConfig, ScriptRunConfig
from runner.spec.models.script import OPTION_PATTERN, SCRIPT_DOC, ScriptSection
from runner.spec.models.spec import OVERRIDE_MARK, ExperimentSpec, MatrixSection, Override, RunOverride
from runner.spec.models.train import (
    AdamOptimizer,
    AdamWOptimizer,
    OptimizerImpl,
    OptimizerSection,
    SGDOptimizer,
    TrainSection,
)

__all__ = [
    "FORMAT_VERSION",
    "NAME_PATTERN",
    "NAME_RULE",
    "SETTING_PATTERN",
    "MAX_CELLS",
    "Name",
    "rule_broken",
    "RULE_LENGTH_BOTH",
    "RULE_LENGTH_NEITHER",
    "RULE_EVAL_BOTH",
    "RULE_NO_BOUND",
    "RULE_NO_TOLERANCE",
    "RULE_FP16_ON_CPU",
    "RULE_ACCURACY_FRACTION",
    "RULE_VISIBLE_DEVICES_AND_GPU_IDS",
    "rule_script_excludes",
    "REFERENCE_MARK",
    "Strict",
    "whole_numbers",
    "MLPModel",
    "LinearModel",
    "TransformerModel",
    "HuggingFaceModel",
    "ModelSection",
    "SyntheticClassification",
    "SyntheticTokens",
    "DataSection",
    "OptimizerImpl",
    "AdamWOptimizer",
    "AdamOptimizer",
    "SGDOptimizer",
    "OptimizerSection",
    "TrainSection",
    "GPU_IDS_PATTERN",
    "GpuIds",
    "CompileSection",
    "LaunchSection",
    "MeasureSection",
    "SLURM_TIME_PATTERN",
    "SLURM_TIME_RULE",
    "SlurmTime",
    "LocalEngineSection",
    "SlurmEngineSection",
    "EngineSection",
    "ENGINE_DOC",
    "default_engine",
    "OPTION_PATTERN",
    "SCRIPT_DOC",
    "ScriptSection",
    "TRAIN_DOC",
    "LAUNCH_DOC",
    "MEASURE_DOC",
    "RunConfig",
    "ScriptRunConfig",
    "BUILTIN_SECTIONS",
    "Metric",
    "METRIC_DOC",
    "WarningName",
    "ACKNOWLEDGE_DOC",
    "acknowledge_field",
    "Cells",
    "RunRef",
    "SpeedupExpectation",
    "BoundExpectation",
    "RatioExpectation",
    "CloseExpectation",
    "AnyExpectation",
    "Expectation",
    "Override",
    "OVERRIDE_MARK",
    "RunOverride",
    "MatrixSection",
    "ExperimentSpec",
]
