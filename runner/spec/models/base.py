"""The spec models' common ground: names, cross-field rules worded once, the strict base model, whole numbers."""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

FORMAT_VERSION: Literal[1] = 1
# '.', ',', '=' and '+' are allowed for matrix cells (`processes=2,mixed_precision=bf16`, `lr=0.001`):
# they are ordinary characters in file names on Linux, macOS and Windows and need no quoting in a shell
# word. A name starts with a letter or digit, so it is never '.', '..' or an option ('-x').
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.,=+-]{0,127}$"
NAME_RULE = "1-128 letters, digits, '-', '_', '.', ',', '=' or '+', starting with a letter or digit"
# A setting as a matrix key or a --set path: `launch.processes`, or a key of one section (`processes`).
SETTING_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
MAX_CELLS = 1024  # cells of one matrix: each is validated, and run, as a run of its own

Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description=f"A name that becomes a folder name: {NAME_RULE}.", examples=["single"]),
]


def rule_broken(message: str, field: str | None = None) -> PydanticCustomError:
    """An error from a cross-field rule; `field` names the key the message should point at."""
    context: dict[str, Any] = {"message": message}
    if field is not None:
        context["field"] = field
    return PydanticCustomError("spec_rule", "{message}", context)


# Cross-field rules, worded once: the validators raise these, and the editor schema (schema.py)
# carries the same words as its error messages, so the editor and the CLI say the same thing.
RULE_LENGTH_BOTH = (
    "set exactly one of epochs and max_steps, not both "
    "(a run that sets max_steps over top-level epochs must also set epochs: null)"
)
RULE_LENGTH_NEITHER = "set exactly one of epochs and max_steps (neither is set)"
RULE_EVAL_BOTH = "set only one of eval_samples and eval_split"
RULE_NO_BOUND = "give at_least, at_most or both"
RULE_NO_TOLERANCE = "give rel_tol, abs_tol or both"
RULE_FP16_ON_CPU = "fp16 mixed precision needs a GPU; on device cpu use bf16 or no"
RULE_ACCURACY_FRACTION = "accuracy is a fraction between 0 and 1"
RULE_VISIBLE_DEVICES_AND_GPU_IDS = (
    "launch.env sets CUDA_VISIBLE_DEVICES and launch.gpu_ids is set too: the processes would see the GPUs "
    "of one and be placed by the other; remove CUDA_VISIBLE_DEVICES and keep gpu_ids"
)


def rule_script_excludes(section: str) -> str:
    """Why a script workload has no model, data or train section."""
    return (
        f"{section} does not apply to a script workload: your script builds its own model, data and training "
        f"loop; remove {section} (in a run, `{section}: null` removes a top-level one)"
    )


# A field that names a run (`extends`, `baseline`, an expectation's `run`): the editor schema gives it
# no example names (the editor offers the file's own runs) and, with "settings", the settings mapping.
REFERENCE_MARK = "x-accel-run-reference"


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, NaN and infinity are not numbers, and nothing is coerced.

    Strict mode refuses text and booleans where numbers or booleans belong (`batch_size: "64"`,
    `processes: true`, `nesterov: "yes"`), as the editor schema does; a whole number written as a
    float (`samples: 1e4`) is still a whole number (see `whole_numbers`).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True, defer_build=True)


def whole_numbers(node: Any) -> Any:
    """The data with every float that is a whole number (1e4, 64.0) as an int, as JSON Schema reads it.

    Strict models take no 64.0 for an int; the editor's schema does (in JSON Schema 64.0 is an
    integer), so the data is normalised once before validation and the two agree.
    """
    if isinstance(node, float) and node.is_integer() and abs(node) < 2**53:
        return int(node)
    if isinstance(node, dict):
        return {key: whole_numbers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [whole_numbers(value) for value in node]
    return node
