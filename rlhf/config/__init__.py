"""Typed config schemas, their registry and validation.

- ``fields``: ``spec`` (a field with help, range, choices) and ``as_config`` (how modules receive their settings);
- ``common``: schemas shared by methods (backbone, tokenizer, sources, splits, loaders, feedback, scorers, optimiser);
- ``run``: trainer, strategy, logger, callbacks, paths and the top-level keys;
- ``registry``: the methods (each method's schemas live in ``rlhf/methods/<method>/config.py``) and Hydra's store;
- ``validate`` and ``hints``: checks before anything is built, and did-you-mean hints.
User-facing errors are all in ``rlhf.errors``.
"""

import importlib
from typing import Any

# Imported on first use, so that a method's config module (which imports ``rlhf.config.common``) can be imported
# first without a cycle through the registry, which imports every method's config.
_EXPORTS = {
    "as_config": "fields", "spec": "fields", "to_plain": "fields",
    "key_hints": "hints", "selected_schema": "hints", "suggest_key": "hints",
    "CONFIG_DIR": "registry", "METHOD_OF_MODULE": "registry", "METHODS": "registry", "SCHEMAS": "registry",
    "Method": "registry", "method_of": "registry", "offline_asset": "registry", "register_configs": "registry",
    "register_resolvers": "registry",
    "resolved_config": "validate", "validate_config": "validate",
}
__all__ = sorted([*_EXPORTS, "ConfigError"])


def __getattr__(name: str) -> Any:
    if name == "ConfigError":
        from rlhf.errors import ConfigError

        return ConfigError
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"rlhf.config.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rlhf.config' has no attribute {name!r}")
