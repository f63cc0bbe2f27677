"""How a schema field is declared (``spec``: default, help, range, choices) and how a module receives its settings
(``as_config``: a typed schema object whose missing values come from the schema, the one place defaults live)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING as DC_MISSING
from dataclasses import field
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlhf.errors import ConfigError

T = TypeVar("T")


def spec(default: Any = DC_MISSING, *, help: str = "", ge=None, gt=None, le=None, lt=None, choices=None, factory=None):
    """A dataclass field carrying its documentation and its allowed range or choices."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": tuple(choices) if choices else None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def range_problem(value: Any, meta: dict) -> str | None:
    """Why ``value`` breaks the range or choices in a field's metadata (``spec``); None when it does not."""
    if value is None:
        return None
    if meta.get("choices") is not None and value not in meta["choices"]:
        allowed = ", ".join("null" if c is None else str(c) for c in meta["choices"])
        return f"must be one of: {allowed}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    checks = (("ge", ">=", value >= (meta.get("ge") or 0)), ("gt", ">", value > (meta.get("gt") or 0)),
              ("le", "<=", value <= (meta.get("le") or 0)), ("lt", "<", value < (meta.get("lt") or 0)))
    if any(meta.get(key) is not None and not ok for key, _, ok in checks):
        return "must be " + " and ".join(f"{sym} {meta[key]}" for key, sym, _ in checks if meta.get(key) is not None)
    return None


def problems(obj: Any, prefix: str = "") -> list[str]:
    """Every range, choice and ``check`` problem of a schema object and its nested schema objects."""
    found = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            found.extend(problems(value, f"{prefix}{f.name}."))
        elif not isinstance(value, (list, dict)):
            problem = range_problem(value, f.metadata)
            if problem:
                found.append(f"{prefix}{f.name}={value!r} {problem}")
    if hasattr(obj, "check"):
        found.extend(f"{prefix}{key}{'' if msg.startswith('=') else ' '}{msg}" for key, msg in obj.check())
    return found


def to_plain(value: Any) -> Any:
    """OmegaConf nodes (resolved) and schema objects to plain Python containers: what checkpoints and hparams hold."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def as_config(schema: type[T], value: Any = None, key: str = "") -> T:
    """``value`` (a schema object, a config node or a plain mapping, possibly partial) as a ``schema`` object: keys it
    does not set take the schema's defaults, and the schema's types and unknown-key checks apply. Modules and
    DataModules receive their settings this way, so no default is written anywhere but in the schema. Ranges, choices
    and the schema's ``check`` apply too (a ``ConfigError`` naming ``key``), so a module built from Python directly is
    held to the same rules as one built from the command line."""
    if isinstance(value, schema):
        return value
    try:
        node = OmegaConf.structured(schema)
        if value is not None:
            node = OmegaConf.merge(node, to_plain(value))
        obj = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:  # an unknown key or a value of the wrong type
        raise ConfigError(f"{key or schema.__name__}: {err}".replace("\n", " ")) from err
    found = problems(obj, f"{key}." if key else "")
    if found:
        raise ConfigError(f"invalid {key or schema.__name__}:\n  - " + "\n  - ".join(found))
    return obj
