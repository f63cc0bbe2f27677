"""One accessor for settings that arrive as plain dicts, DictConfigs or dataclass instances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_field(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if isinstance(cfg, Mapping) else getattr(cfg, key, default)


def missing_local_dir(name: str, key: str) -> str | None:
    """A message when ``name`` is meant as a local directory (absolute, ``./``, ``../``, ``~``, or more than one ``/``,
    which no hub id has) and there is none, so the user reads "no such directory" rather than the hub's complaint
    about a malformed repo id. None when it exists or looks like a hub id (``gpt2``, ``org/model``)."""
    import os
    from pathlib import Path

    path = Path(str(name)).expanduser()
    looks_local = str(name).startswith(("/", "./", "../", "~", ".\\")) or str(name).count("/") > 1
    if path.exists() or not looks_local:
        return None
    return (f"{key}={name!r}: no such directory ({path.resolve()}; relative paths are taken from {os.getcwd()}). "
            f"Pass a directory written by save_pretrained (e.g. a run's export/) or a hub model id")
