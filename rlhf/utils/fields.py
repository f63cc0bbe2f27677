"""One accessor for settings that arrive as plain dicts, DictConfigs or dataclass instances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_field(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if isinstance(cfg, Mapping) else getattr(cfg, key, default)
