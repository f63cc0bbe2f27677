"""Did-you-mean hints for command-line keys, found from the schema of the option a command line selects."""

from __future__ import annotations

import difflib
import importlib.util
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from rlhf.config.registry import CONFIG_DIR, SCHEMAS
from rlhf.config.run import RunConf


def suggest_key(wrong: str, allowed: list[str]) -> str:
    """'did you mean' text for a misspelt key."""
    close = difflib.get_close_matches(wrong, allowed, n=3)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _schema_fields(schema: type) -> dict[str, Any]:
    """Field name -> nested schema (a dataclass) or None, following ``Optional[...]`` and ``factory`` defaults."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        hint = hints.get(f.name)
        candidates = [hint, *typing.get_args(hint)]
        out[f.name] = next((c for c in candidates if isinstance(c, type) and is_dataclass(c)), None)
    return out


def _union_fields(schemas: list[type]) -> dict[str, list[type]]:
    """Field name -> the nested schemas it has in any of ``schemas`` (empty for a leaf)."""
    out: dict[str, list[type]] = {}
    for schema in schemas:
        for name, nested in _schema_fields(schema).items():
            out.setdefault(name, [])
            if nested is not None and nested not in out[name]:
                out[name].append(nested)
    return out


OVERLAY_GROUPS = ("experiment", "debug", "hparams_search", "launcher", "hydra")  # groups that are not keys of RunConf
PLUGIN_GROUPS = {"hparams_search": "hydra_plugins.hydra_optuna_sweeper",
                 "launcher": "hydra_plugins.hydra_submitit_launcher"}


def _missing_plugin_hint(group: str) -> str | None:
    module = PLUGIN_GROUPS.get(group)
    try:
        found = module is None or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if found:
        return None
    return f"{group}= needs a Hydra plugin that is not installed: pip install -e \".[sweeps]\""


def _defaults_list(path: Path) -> list:
    try:
        return list((yaml.safe_load(path.read_text()) or {}).get("defaults") or [])
    except (OSError, yaml.YAMLError):
        return []


def _choice(defaults: list, key: str) -> str | None:
    for entry in defaults:
        if isinstance(entry, dict) and key in entry:
            return str(entry[key])
    return None


def selected_schema(group: str, overrides: list[str]) -> type | None:
    """The schema of the ``group`` option a command line selects (``group=x``, else through ``experiment=y``, else the
    default of ``conf/train.yaml``), found by following the option's defaults list to its ``/schema/<group>/<name>``;
    None when it cannot be told."""
    choice = experiment = None
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key == group:
            choice = value
        elif key == "experiment":
            experiment = value
    if choice is None and experiment:
        choice = _choice(_defaults_list(CONFIG_DIR / "experiment" / f"{experiment}.yaml"), f"override /{group}")
    if choice is None:
        choice = _choice(_defaults_list(CONFIG_DIR / "train.yaml"), group)
    seen = set()
    while choice and choice not in seen:
        seen.add(choice)
        follow = None
        for entry in _defaults_list(CONFIG_DIR / group / f"{choice}.yaml"):
            if isinstance(entry, str) and entry.startswith(f"/schema/{group}/"):
                return SCHEMAS[group].get(entry.split("/")[3].split("@")[0])
            if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
                follow = entry  # another option of the same group (e.g. feedback_file -> feedback_simulated)
        choice = follow
    return None


ADDABLE_GROUPS = {"callbacks": "default", "logger": "wandb"}  # groups whose options add nodes, and the default option


def _added_node_hint(parts: list[str], override: str, overrides: list[str]) -> str | None:
    """``callbacks.early_stopping.patience=3`` (or ``callbacks.stop_at_step=3``) where the command does not add that
    node: OmegaConf cannot set a key under a null node (a bare AssertionError), so say how to add it."""
    group, name = parts[0], parts[1] if len(parts) > 1 else ""
    if group not in ADDABLE_GROUPS or not (CONFIG_DIR / group / f"{name}.yaml").is_file():
        return None
    value = override.split("=", 1)[1]
    if len(parts) == 2 and value in ("null", "") or value.startswith("{"):
        return None
    selection = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=", 1)[0] == group),
                     ADDABLE_GROUPS[group])
    chosen = [c.strip() for c in selection.strip("[]").split(",") if c.strip()]
    if name in chosen:
        return None
    keys = [k for k in _schema_fields(_container(group)[name]) if not k.startswith("_")] if _container(group) else []
    example = f"{group}.{name}.{keys[0]}=..." if keys else f"{group}.{name}.<key>=..."
    return (f"'{group}.{name}' is a node that this command does not add: add it with "
            f"{group}=[{','.join([*chosen, name])}] (then set its keys, e.g. {example})")


def _container(group: str) -> dict[str, Any] | None:
    schema = next(iter(SCHEMAS[group].values()))
    return _schema_fields(schema) if len(SCHEMAS[group]) == 1 else None


def key_hints(overrides: list[str]) -> list[str]:
    """'Did you mean' hints for command-line overrides whose key is in no schema (shown after Hydra's error)."""
    hints = []
    for override in overrides:
        if "=" not in override or override.startswith(("hydra.", "hydra/", "~", "-")):
            continue
        key = override.split("=", 1)[0].lstrip("+")
        parts = key.split(".")
        top = _schema_fields(RunConf)
        if parts[0] in OVERLAY_GROUPS and len(parts) == 1:
            plugin_hint = _missing_plugin_hint(parts[0])
            if plugin_hint:
                hints.append(plugin_hint)
            continue
        if parts[0] not in top:
            hints.append(f"'{parts[0]}' is not a config key or group.{suggest_key(parts[0], list(top))}")
            continue
        if len(parts) == 1 or parts[0] not in SCHEMAS:
            continue
        node_hint = _added_node_hint(parts, override, overrides)
        if node_hint:
            hints.append(node_hint)
            continue
        selected = selected_schema(parts[0], overrides)  # the option this command selects, else every option's keys
        schemas = [selected] if selected is not None else list(SCHEMAS[parts[0]].values())
        path = parts[0]
        for part in parts[1:]:
            options = _union_fields(schemas)
            if part not in options:
                hints.append(f"'{path}.{part}' is not a known key.{suggest_key(part, list(options))} "
                             f"Keys of {path}: {', '.join(sorted(options))}")
                break
            schemas = options[part]
            if not schemas:
                break
            path = f"{path}.{part}"
    return hints
