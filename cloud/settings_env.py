"""The environment variables a settings class reads, so that any other ``GIFTWHEEL_*`` one is refused.

pydantic-settings reads only the variables that name a field and ignores the rest, so a typo
(``GIFTWHEEL_INGEST__STREAM_SHRADS=8``) would leave the setting at its default without a word.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field nests (also inside ``X | None`` or ``Annotated[X, ...]``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _section(arg)) is not None:
            return found
    return None


def _names(model: type[BaseModel], prefix: str, delimiter: str) -> Iterable[str]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}".upper()
        yield key  # a whole section can also be given as one JSON value
        section = _section(field.annotation)
        if section is not None:
            yield from _names(section, key + delimiter, delimiter)


def setting_names(settings: type[BaseSettings]) -> set[str]:
    """Every variable ``settings`` reads, upper case (pydantic-settings matches them in any case)."""
    config = settings.model_config
    return set(_names(settings, config.get("env_prefix", ""), config.get("env_nested_delimiter") or "__"))


def unknown_variables(settings: type[BaseSettings], environ: Mapping[str, str]) -> list[str]:
    prefix = settings.model_config.get("env_prefix", "").upper()
    known = setting_names(settings)
    return sorted(k for k in environ if k.upper().startswith(prefix) and k.upper() not in known)


def refuse_unknown_variables(settings: type[BaseSettings], environ: Mapping[str, str]) -> None:
    """Raise ValueError naming each unknown variable with the nearest real ones."""
    unknown = unknown_variables(settings, environ)
    if not unknown:
        return
    known = sorted(setting_names(settings))
    lines = []
    for name in unknown:
        near = difflib.get_close_matches(name.upper(), known, n=2, cutoff=0.7)
        lines.append(f"{name}: not a setting" + (f" (did you mean {' or '.join(near)}?)" if near else ""))
    prefix = settings.model_config.get("env_prefix", "")
    raise ValueError(
        f"unknown {prefix}* environment variable(s), refused so that a misspelt setting cannot "
        "silently keep its default: " + "; ".join(lines)
    )


def split_csv(value: object) -> object:
    """A list setting given as one environment string: comma-separated, blanks dropped."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class StrictSection(BaseModel):
    """A nested settings section: a misspelt key is an error, never a default kept in silence."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StrictEnvSettings(BaseSettings):
    """Settings read from the GIFTWHEEL_* environment that refuse every unknown variable of it.

    Errors never echo the values given, which hold the keys and secrets."""

    model_config = SettingsConfigDict(
        env_prefix="GIFTWHEEL_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: Any) -> Any:
        refuse_unknown_variables(cls, os.environ)
        return data
