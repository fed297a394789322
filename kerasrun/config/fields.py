"""What the config sections share: `Strict` (unknown keys refused), annotated number and name types, upper bounds, name checks."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.config import JsonDict

from kerasrun.config.yamlsource import SCIENTIFIC
from kerasrun.imports import IMPORT_PATH

# An object spec to the JSON schema: a name or a mapping (kerasrun checks the forms, with messages a JSON schema can't give).
SPEC_JSON_SCHEMA: JsonDict = {"anyOf": [{"type": "string"}, {"type": "object"}]}
ObjectSpec = Annotated[Any, Field(json_schema_extra=SPEC_JSON_SCHEMA)]

# Upper bounds where a larger value can only be a mistake (each message names its bound).
MAX_EPOCHS = 1_000_000
MAX_BATCH = 1 << 24
MAX_STEPS = 1 << 31
MAX_SAMPLES = 1 << 31
MAX_CLASSES = 1_000_000
MAX_LAYERS = 1000  # Keras traces a 1,000-layer chain in ~3 minutes and 3.5 GB here; larger graphs belong in a factory
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Names Keras and TensorFlow accept for layers and inputs (TensorFlow's scope names, without Keras's forbidden `/`).
LAYER_NAME = re.compile(r"^[A-Za-z0-9_.>-]+$")


def not_a_boolean(value: Any) -> Any:
    """YAML reads true/false/yes/no/on/off as booleans: never let one pass as a number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()} (YAML reads true/false/yes/no/on/off as booleans)")
    return value


def a_number(value: Any) -> Any:
    """Neither a boolean nor text passes as a number: `scale: '16'` is text the author quoted, pydantic would read it as 16."""
    if isinstance(value, str):
        if SCIENTIFIC.match(value.strip()):
            raise ValueError(
                f"expected a number, got the text {value!r} (YAML 1.1 reads {value} as text): "
                f"write it with a dot and a signed exponent, e.g. {float(value):.1e}"
            )
        raise ValueError(f"expected a number, got the text {value!r}" + (": write it without quotes" if is_number(value) else ""))
    return not_a_boolean(value)


def is_number(text: str) -> bool:
    """Whether `text` reads as a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_run_name(value: str) -> str:
    """A run name becomes part of a folder name: letters, digits and _ . - only."""
    if not RUN_NAME.match(value):
        raise ValueError(f"{value!r} can't name a run folder: letters, digits and _ . - only, starting with a letter or digit")
    return value


def check_layer_name(value: Any) -> Any:
    """A name Keras and TensorFlow accept for a layer or an input."""
    if not isinstance(value, str) or not LAYER_NAME.match(value) or len(value) > 200:
        raise ValueError(
            f"{value!r} is not a usable layer name: letters, digits and _ . > - only, at most 200 characters "
            "(TensorFlow's scope names; Keras forbids `/`)"
        )
    return value


Real = Annotated[float, BeforeValidator(a_number)]
Finite = Annotated[float, BeforeValidator(a_number), Field(allow_inf_nan=False)]
Fraction = Annotated[float, BeforeValidator(a_number), Field(gt=0, lt=1, allow_inf_nan=False)]
Size = Annotated[int, Field(ge=1, le=MAX_SAMPLES, strict=True)]
Dimension = Annotated[int, Field(ge=-1, le=MAX_SAMPLES, strict=True)]  # -1: inferred (reshape)
LayerName = Annotated[str, AfterValidator(check_layer_name)]
ImportPath = Annotated[str, Field(pattern=IMPORT_PATH.pattern, description="package.module:name")]
DeviceName = Annotated[str, Field(pattern=r"^(auto|cpu|gpu|gpu:\d+)$")]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
