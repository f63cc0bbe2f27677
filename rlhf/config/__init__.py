"""Typed config schemas, their registry and validation.

- ``fields``: ``spec`` (a field with help, range, choices) and ``as_config`` (how modules receive their settings);
- ``common``: schemas shared by methods (backbone, tokenizer, sources, splits, loaders, feedback, scorers, optimiser);
- ``run``: trainer, strategy, logger, callbacks, paths and the top-level keys;
- ``registry``: the methods (each method's schemas live in ``rlhf/methods/<method>/config.py``) and Hydra's store;
- ``validate`` and ``hints``: checks before anything is built, and did-you-mean hints.
User-facing errors are all in ``rlhf.errors``.
"""

from rlhf.config.fields import as_config, spec, to_plain
from rlhf.config.hints import key_hints, selected_schema, suggest_key
from rlhf.config.registry import (
    CONFIG_DIR,
    METHOD_OF_MODULE,
    METHODS,
    SCHEMAS,
    Method,
    method_of,
    offline_asset,
    register_configs,
    register_resolvers,
)
from rlhf.config.validate import resolved_config, validate_config
from rlhf.errors import ConfigError

__all__ = [
    "CONFIG_DIR", "METHODS", "METHOD_OF_MODULE", "SCHEMAS", "ConfigError", "Method", "as_config", "key_hints",
    "method_of", "offline_asset", "register_configs", "register_resolvers", "resolved_config", "selected_schema",
    "spec", "suggest_key", "to_plain", "validate_config",
]
