"""The params of the text craft jobs: the worker config's fields (workers/ml/craft/config.py),
plus what only the platform knows (which models, adapters and dataset version).

As for fine-tunes, the config's fields are not written here: `config_params_model` builds them
from the dataclass (type, default, bounds, choices, title, help), so the form, the API and the
worker accept the same values; a rule the config checks is reported on the field it names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from workers.ml.craft.config import (
    BiasProbeConfig,
    ConfigError,
    DistillConfig,
    QuantizeConfig,
    describe,
)

__all__ = ["BiasProbeParams", "DistillParams", "QuantizeParams", "to_config"]

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class _ConfigParams(BaseModel):
    model_config = {"extra": "forbid"}
    config_class: ClassVar[type] = DistillConfig

    @model_validator(mode="after")
    def _worker_accepts_it(self) -> _ConfigParams:
        try:
            to_config(self)
        except ConfigError as exc:
            error = PydanticCustomError("craft_config", "{message}", {"message": str(exc)})
            loc = (exc.field,) if exc.field else ()
            raise ValidationError.from_exception_data(
                type(self).__name__, [InitErrorDetails(type=error, loc=loc, input=self)]
            ) from exc
        return self


def _config_field(item: dict[str, Any]) -> tuple[Any, Any]:
    bounds = {key: item[key] for key in ("ge", "gt", "le") if key in item}
    annotation: Any = Literal[tuple(item["choices"])] if "choices" in item else _TYPES[item["type"]]
    return annotation, Field(
        item["default"], title=item["title"], description=item["help"], **bounds
    )


def config_params_model(
    name: str, config_class: type, platform_fields: dict[str, Any]
) -> type[_ConfigParams]:
    """A job's params model: the platform fields, then the config's fields."""
    fields = {item["name"]: _config_field(item) for item in describe(config_class)}
    model = create_model(
        name, __base__=_ConfigParams, __module__=__name__, **platform_fields, **fields
    )
    model.config_class = config_class
    return model


def to_config(params: BaseModel) -> Any:
    """The worker's config from validated (or being validated) params."""
    cls = params.config_class  # type: ignore[attr-defined]
    names = [f.name for f in dataclasses.fields(cls)]
    return cls.from_dict({name: getattr(params, name) for name in names})


_NAME = (
    str,
    Field(
        "",
        max_length=150,
        title="Model name",
        description="Empty: named after the source model and the job",
    ),
)
_TEMPLATE = (
    str,
    Field(
        "", max_length=4000, title="Prompt template", description="Empty: the version's template"
    ),
)

DistillParams = config_params_model(
    "DistillParams",
    DistillConfig,
    {
        "teacher_model_id": (int, Field(..., ge=1, title="Teacher model")),
        "teacher_adapter_id": (
            int,
            Field(
                0,
                ge=0,
                title="Teacher adapter",
                description="0: the base model alone; an adapter of this project is merged in",
            ),
        ),
        "student": (
            Literal["shrink", "model"],
            Field(
                "shrink",
                title="Student",
                description="shrink: built from the teacher (every k-th layer); model: a "
                "registered model with the same tokenizer",
            ),
        ),
        "student_model_id": (
            int,
            Field(
                0,
                ge=0,
                title="Student model",
                description="Used when the student is a registered model",
            ),
        ),
        "dataset_version_id": (int, Field(..., ge=1, title="Dataset version")),
        "name": _NAME,
        "template": _TEMPLATE,
    },
)

QuantizeParams = config_params_model(
    "QuantizeParams",
    QuantizeConfig,
    {
        "base_model_id": (int, Field(..., ge=1, title="Model")),
        "adapter_id": (
            int,
            Field(
                0,
                ge=0,
                title="Adapter",
                description="0: the model alone; an adapter of this project is merged in first",
            ),
        ),
        "dataset_version_id": (
            int,
            Field(
                ...,
                ge=1,
                title="Dataset version",
                description="Its validation split measures perplexity",
            ),
        ),
        "name": _NAME,
        "template": _TEMPLATE,
    },
)

BiasProbeParams = config_params_model(
    "BiasProbeParams",
    BiasProbeConfig,
    {
        "base_model_id": (int, Field(..., ge=1, title="Base model")),
        "adapter_ids": (
            list[int],
            Field(
                default_factory=list,
                max_length=5,
                title="Adapters",
                description="Fine-tuned adapters of this base model to compare with it",
            ),
        ),
    },
)
