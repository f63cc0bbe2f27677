"""Every default lives once, in the schema: modules, DataModules and YAML options do not restate it, and no
``.get(key, default)`` on a config does either. These tests fail on a restatement, so a copy cannot drift."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class

from rlhf.config import CONFIG_DIR, METHODS, SCHEMAS, as_config
from rlhf.config.common import BackboneConf
from rlhf.errors import ConfigError

RLHF = Path(__file__).resolve().parents[1] / "rlhf"


def _schema_default(schema: type, name: str):
    f = next(f for f in dataclasses.fields(schema) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@pytest.mark.parametrize("name", sorted(METHODS))
def test_modules_take_their_settings_without_defaults(name):
    """A module or DataModule whose constructor had a default would restate (or contradict) the schema's."""
    method = METHODS[name]
    for schema in (method.schema, method.data_schema):
        cls = get_class(schema._target_)
        assert cls.schema is schema, f"{cls.__name__}.schema must be {schema.__name__}"
        with_defaults = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                         if p.default is not inspect.Parameter.empty]
        assert not with_defaults, f"{cls.__name__}.__init__ restates defaults for {with_defaults}"


def _options():
    for group in SCHEMAS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            yield group, path


def _base_values(group: str, path: Path) -> dict:
    """What an option starts from: its schema's defaults, then the same-group options its defaults list includes."""
    raw = yaml.safe_load(path.read_text()) or {}
    base: dict = {}
    for entry in raw.get("defaults") or []:
        if isinstance(entry, str) and entry.startswith(f"/schema/{group}/"):
            schema = SCHEMAS[group][entry.split("/")[3].split("@")[0]]
            base = _merge(base, dataclasses.asdict(schema()))  # the schema's defaults
        elif isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            parent = path.parent / f"{entry}.yaml"
            base = _merge(base, _merge(_base_values(group, parent), _own(parent)))
    return base


def _own(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text()) or {}
    return {k: v for k, v in raw.items() if k != "defaults"}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _restated(own: dict, base: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in own.items():
        if key not in base:
            continue
        if isinstance(value, dict) and isinstance(base[key], dict):
            found.extend(_restated(value, base[key], f"{prefix}{key}."))
        elif isinstance(value, str) and "${" in value:
            continue  # an interpolation ties the value to another key: it changes the default
        elif value == base[key] and not isinstance(value, dict):
            found.append(f"{prefix}{key}: {value!r}")
    return found


@pytest.mark.parametrize(("group", "path"), list(_options()), ids=lambda v: getattr(v, "name", v))
def test_yaml_options_list_only_what_they_change(group, path):
    restated = _restated(_own(path), _base_values(group, path))
    assert not restated, (f"{path.relative_to(CONFIG_DIR)} restates values it inherits from its schema (or the "
                          f"option it extends); remove them: {restated}")


def _schema_field_names() -> set[str]:
    names = set()
    todo = [schema for options in SCHEMAS.values() for schema in options.values()]
    while todo:
        schema = todo.pop()
        for f in dataclasses.fields(schema):
            names.add(f.name)
            default = _schema_default(schema, f.name)
            if dataclasses.is_dataclass(default):
                todo.append(type(default))
    return names


def test_no_config_get_with_a_default():
    """``settings.get("lr", 1e-3)`` restates a schema default; settings arrive as schema objects (``as_config``)."""
    fields = _schema_field_names()
    offenders = []
    for path in sorted(RLHF.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in fields
                    and not (isinstance(node.args[1], ast.Constant) and node.args[1].value is None)):
                receiver = ast.unparse(node.func.value)
                if any(word in receiver for word in ("cfg", "source", "spec", "split", "loader", "hp", "hparams",
                                                     "evaluation", "scores", "conditional", "policy", "columns")):
                    offenders.append(f"{path.relative_to(RLHF.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "config reads that restate a default:\n" + "\n".join(offenders)


def test_as_config_fills_defaults_and_applies_the_schema_rules():
    """The one way settings reach code: partial mappings take the schema's defaults; ranges and checks apply."""
    model = as_config(BackboneConf, {"hidden_size": 32}, "model")
    assert (model.hidden_size, model.num_layers) == (32, _schema_default(BackboneConf, "num_layers"))
    with pytest.raises(ConfigError, match=r"model.num_heads=3 must divide model.hidden_size=32"):
        as_config(BackboneConf, {"hidden_size": 32, "num_heads": 3}, "model")
    with pytest.raises(ConfigError, match=r"method.samples_per_prompt=1 must be >= 2 with advantage=rloo"):
        as_config(METHODS["ppo"].schema, {"advantage": "rloo"}, "method")
    with pytest.raises(ConfigError, match=r"method.kl_coef=-1.0 must be >= 0"):
        as_config(METHODS["ppo"].schema, {"kl_coef": -1.0}, "method")
