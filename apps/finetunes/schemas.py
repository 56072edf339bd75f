"""The fine-tune job's params: the worker's LoraFinetuneConfig, plus what only the platform knows.

The training fields are not written here: `lora_params_model` builds them from the dataclass's
fields (type, default, bounds, choices, title, help), so the form, the API and the worker accept
the same values. A rule across fields (max_steps 0, several GPUs with 8-/4-bit loading) is checked
by building the config itself, and reported on the field the config names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from workers.ml.finetune.config import ConfigError, LoraFinetuneConfig

__all__ = ["LoraParams", "lora_params_model", "params_model", "to_config"]

# The fields a job has and the worker's config does not: what to train on, and what to call it.
PLATFORM_FIELDS: dict[str, Any] = {
    "base_model_id": (int, Field(..., ge=1, title="Base model")),
    "dataset_version_id": (int, Field(..., ge=1, title="Dataset version")),
    "name": (str, Field("", max_length=200, title="Adapter name")),
    "template": (
        str,
        Field(
            "",
            max_length=4000,
            title="Prompt template",
            description="Empty: the version's template",
        ),
    ),
}
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


class _ConfigParams(BaseModel):
    model_config = {"extra": "forbid"}
    # The worker's config class these params build (set by params_model on each subclass).
    config_class: ClassVar[type[LoraFinetuneConfig]] = LoraFinetuneConfig

    @model_validator(mode="after")
    def _worker_accepts_it(self) -> _ConfigParams:
        try:
            to_config(self)
        except ConfigError as exc:  # reported on the field it names, as a bound would be
            error = PydanticCustomError("lora_config", "{message}", {"message": str(exc)})
            loc = (exc.field,) if exc.field else ()
            raise ValidationError.from_exception_data(
                type(self).__name__, [InitErrorDetails(type=error, loc=loc, input=self)]
            ) from exc
        return self


def _config_field(item: dict[str, Any]) -> tuple[Any, Any]:
    """(annotation, Field) for one entry of LoraFinetuneConfig.describe()."""
    bounds = {key: item[key] for key in ("ge", "gt", "le") if key in item}
    if item["type"] == "list[str]":  # a comma-separated string in forms and JSON; None is ""
        annotation: Any = str
        default = ",".join(item["default"] or ())
        bounds = {"max_length": item["max_length"]} if "max_length" in item else {}
    elif "choices" in item:
        annotation, default = Literal[tuple(item["choices"])], item["default"]
    else:
        annotation, default = _TYPES[item["type"]], item["default"]
    return annotation, Field(default, title=item["title"], description=item["help"], **bounds)


def params_model(
    name: str,
    config_class: type[LoraFinetuneConfig] = LoraFinetuneConfig,
    platform_fields: dict[str, Any] | None = None,
) -> type[BaseModel]:
    """A job's pydantic params model: platform fields, then the fields of `config_class`
    (LoraFinetuneConfig or a subclass of it), validated by building that config."""
    fields = {item["name"]: _config_field(item) for item in config_class.describe()}
    model = create_model(
        name,
        __base__=_ConfigParams,
        __module__=__name__,
        **(PLATFORM_FIELDS if platform_fields is None else platform_fields),
        **fields,
    )
    model.config_class = config_class
    return model


def lora_params_model() -> type[BaseModel]:
    """The pydantic params model of `finetune.lora`: platform fields, then the config's fields."""
    return params_model("LoraParams")


LoraParams = lora_params_model()


def to_config(params: BaseModel) -> Any:
    """The worker's config (params' config_class, LoraFinetuneConfig by default) from validated
    (or being validated) params."""
    cls = getattr(params, "config_class", LoraFinetuneConfig)
    names = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("hidden")]
    return cls.from_dict({name: getattr(params, name) for name in names})
