"""The image-training jobs' params: the trainer's config fields, plus what only the platform knows.

The training fields are not written here: `params_model` builds them from the config dataclass's
fields (type, default, bounds, choices, title, help; workers/imaging/training/config.py), so the
form, the API and the worker accept the same values. Rules across fields are checked by building
the config itself and reported on the field it names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from workers.imaging.training.config import (
    ConfigError,
    ImageLoraConfig,
    ImageTrainConfig,
    TextualInversionConfig,
)

__all__ = ["ImageLoraParams", "TextualInversionParams", "to_config"]

ASSET_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$"

DATA_FIELDS: dict[str, Any] = {
    "base_model_id": (int, Field(..., ge=1, title="Base model")),
    "dataset_version_id": (int, Field(..., ge=1, title="Dataset version")),
}
LORA_FIELDS: dict[str, Any] = {
    **DATA_FIELDS,
    "name": (
        str,
        Field(
            ...,
            pattern=ASSET_NAME_PATTERN,
            title="LoRA name",
            description="The name prompts use: <lora:name:weight>. Letters, digits, '_', '-' "
            "and '.'.",
        ),
    ),
}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "lines": str}


class _ConfigParams(BaseModel):
    model_config = {"extra": "forbid"}
    config_class: ClassVar[type[ImageTrainConfig]] = ImageTrainConfig

    @model_validator(mode="after")
    def _trainer_accepts_it(self) -> _ConfigParams:
        try:
            to_config(self)
        except ConfigError as exc:  # reported on the field it names, as a bound would be
            error = PydanticCustomError("image_config", "{message}", {"message": str(exc)})
            loc = (exc.field,) if exc.field else ()
            raise ValidationError.from_exception_data(
                type(self).__name__, [InitErrorDetails(type=error, loc=loc, input=self)]
            ) from exc
        return self


def _config_field(item: dict[str, Any]) -> tuple[Any, Any]:
    """(annotation, Field) for one entry of a config's describe()."""
    bounds = {key: item[key] for key in ("ge", "gt", "le", "max_length") if key in item}
    if "choices" in item:
        annotation: Any = Literal[tuple(item["choices"])]
    else:
        annotation = _TYPES[item["type"]]
    return annotation, Field(
        item["default"], title=item["title"], description=item["help"], **bounds
    )


def params_model(
    name: str, config_class: type[ImageTrainConfig], platform_fields: dict[str, Any]
) -> type[_ConfigParams]:
    """A job's pydantic params model: platform fields, then the config's fields."""
    fields: dict[str, Any] = {item["name"]: _config_field(item) for item in config_class.describe()}
    model = create_model(
        name, __base__=_ConfigParams, __module__=__name__, **platform_fields, **fields
    )
    model.config_class = config_class
    return model


ImageLoraParams = params_model("ImageLoraParams", ImageLoraConfig, LORA_FIELDS)
TextualInversionParams = params_model("TextualInversionParams", TextualInversionConfig, DATA_FIELDS)


def to_config(params: BaseModel) -> Any:
    """The trainer's config (the params' config_class) from validated (or being validated) params."""
    cls = getattr(params, "config_class", ImageTrainConfig)
    names = [f.name for f in dataclasses.fields(cls)]
    return cls.from_dict({name: getattr(params, name) for name in names})


def asset_name(params: BaseModel) -> str:
    """The name the finished asset is registered (and used in prompts) under."""
    return str(getattr(params, "name", None) or getattr(params, "token", ""))
