"""``rlhf-train --help``: one page (under 80 lines) with the usage, the config groups and their options, and the
documented keys of the method the command line selects (``rlhf-train method=ppo --help``,
``rlhf-train experiment=ppo_tiny --help``; the default method otherwise), each with its default, its allowed range or
choices and its help text, read from the schema's field metadata (``rlhf.config.spec``). A key's default is what a
run gets: the schema's, overridden by the method option's YAML and by the selected experiment's ``method:`` keys.

It replaces Hydra's generated app help (the whole default config, internal ``schema/*`` groups, no field help). The
composed config of any command line is ``rlhf-train <overrides> --cfg job``; Hydra's own flags are
``rlhf-train --hydra-help``.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from pathlib import Path
from typing import Any

import yaml

from rlhf.config import CONFIG_DIR, SCHEMAS, selected_schema

HIDDEN_GROUPS = ("schema", "hydra", "recipe")  # Hydra's own settings, the typed schemas, rlhf-pipeline's recipes
WIDTH = 120
MAX_LINES = 79  # the page fits a screen or two
MAX_DEFAULT = 30  # longer defaults (nested groups, lists) are cut with an ellipsis
NBSP = "\u00a0"  # keeps "(> 0.0)" on one line when the help text is wrapped


def _yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _defaults(path: Path) -> list:
    return list(_yaml(path).get("defaults") or [])


def _choice(defaults: list, key: str) -> str | None:
    for entry in defaults:
        if isinstance(entry, dict) and key in entry:
            return None if entry[key] is None else str(entry[key])
    return None


def _user_dirs(overrides: list[str]) -> list[Path]:
    """The directories a ``hydra.searchpath=[file:///a,file:///b]`` override adds (``pkg://`` entries are skipped)."""
    dirs: list[Path] = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") != "hydra.searchpath":
            continue
        for entry in value.strip().strip("[]").split(","):
            entry = entry.strip().strip("'\"")
            if entry.startswith("file://"):
                dirs.append(Path(entry[len("file://"):]))
            elif entry and "://" not in entry:
                dirs.append(Path(entry))
    return dirs


def _find_option(group: str, option: str, user_dirs: list[Path]) -> Path | None:
    """The YAML of ``group=option``: in the package's tree, else in a ``hydra.searchpath`` directory."""
    for root in [CONFIG_DIR, *user_dirs]:
        path = root / group / f"{option}.yaml"
        if path.is_file():
            return path
    return None


def _method_choice(overrides: list[str], user_dirs: list[Path]) -> str | None:
    """The ``method`` option a command line selects: ``method=x``, else ``experiment=y``'s override, else the default."""
    method = experiment = None
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key == "method":
            method = value
        elif key == "experiment":
            experiment = value
    if method is None and experiment:
        path = _find_option("experiment", experiment, user_dirs)
        method = _choice(_defaults(path), "override /method") if path else None
    return method or _choice(_defaults(CONFIG_DIR / "train.yaml"), "method")


def _options(user_dirs: list[Path]) -> dict[str, list[str]]:
    groups: dict[str, set[str]] = {}
    for root in [CONFIG_DIR, *user_dirs]:
        if not root.is_dir():
            continue
        for sub in root.iterdir():
            if sub.is_dir() and sub.name not in HIDDEN_GROUPS and not sub.name.startswith(("_", ".")):
                options = {p.stem for p in sub.glob("*.yaml")}
                if options:
                    groups.setdefault(sub.name, set()).update(options)
    return {group: sorted(options) for group, options in sorted(groups.items())}


def _wrapped(head: str, items: list[str], indent: int) -> list[str]:
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(line) + len(piece) + 1 > WIDTH and line.strip():
            lines.append(line.rstrip())
            line = " " * indent
        line += piece + " "
    lines.append(line.rstrip())
    return lines


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if value is dataclasses.MISSING or value == "???":
        return "???"
    return str(value)


def _allowed(meta: Any) -> str:
    """``choices`` as ``one of a|b``; bounds as ``> 0``, ``>= 1``, ``in [0, 1]``, ``in (0, 1]``; "" when free."""
    if meta.get("choices"):
        return "one of " + "|".join(_show(c) for c in meta["choices"])
    low = ("[", meta["ge"]) if meta.get("ge") is not None else ("(", meta["gt"]) if meta.get("gt") is not None else None
    high = ("]", meta["le"]) if meta.get("le") is not None else (")", meta["lt"]) if meta.get("lt") is not None \
        else None
    if low and high:
        return f"in {low[0]}{_show(low[1])}, {_show(high[1])}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {_show(low[1])}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {_show(high[1])}"
    return ""


def _nested(schema: type, name: str) -> type | None:
    hint = typing.get_type_hints(schema).get(name)
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _schema_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return dataclasses.MISSING


def _table(rows: list[tuple[str, str]], budget: int) -> list[str]:
    """Two columns; a first column wider than the others puts its text on the next line. Texts longer than WIDTH are
    wrapped, in order, while the table stays within ``budget`` lines; the rest stay on one (long) line."""
    left = min(max(len(r[0]) for r in rows), 36)
    indent = " " * (left + 4)
    rendered: list[tuple[list[str], list[str]]] = []  # per row: its lines unwrapped, its lines wrapped
    for first, second in rows:
        head = [f"  {first}", indent] if len(first) > left else [f"  {first:<{left}}  "]
        chunks = textwrap.wrap(second, WIDTH - len(indent), break_long_words=False, break_on_hyphens=False) or [""]
        flat = [*head[:-1], head[-1] + second]
        wrapped = [*head[:-1], head[-1] + chunks[0], *(indent + chunk for chunk in chunks[1:])]
        rendered.append((flat, wrapped))
    spare = budget - sum(len(flat) for flat, _ in rendered)
    out = []
    for flat, wrapped in rendered:
        extra = len(wrapped) - len(flat)
        use_wrapped = extra <= spare
        spare -= extra if use_wrapped else 0
        out += wrapped if use_wrapped else flat
    return [line.replace(NBSP, " ").rstrip() for line in out]


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, nested dicts merged key by key (as Hydra merges a config onto its schema)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def method_keys(schema: type, values: dict) -> list[tuple[str, str, str, str]]:
    """(key, default, allowed, help) of every documented field of a method schema; ``values`` holds the defaults
    (missing keys fall back to the schema's). Nested schemas are one ``key.*`` row."""
    rows = []
    for f in dataclasses.fields(schema):
        text = (f.metadata or {}).get("help")
        if not text:
            continue  # undocumented internals such as _target_
        value = values.get(f.name, _schema_default(f))
        if _nested(schema, f.name) is not None:  # one row: its first setting stands for the rest
            first = next(iter(value.items()), None) if isinstance(value, dict) else None
            shown = "{" + f"{first[0]}: {_show(first[1])}" + (", …}" if len(value) > 1 else "}") if first else ""
            rows.append((f"method.{f.name}.*", shown, "", text))
        else:
            rows.append((f"method.{f.name}", _show(value), _allowed(f.metadata), text))
    return rows


def help_page(argv: list[str]) -> str:
    """The page ``rlhf-train [overrides] --help`` prints; ``argv`` is the command line without the program name."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    user_dirs = _user_dirs(overrides)
    defaults = _defaults(CONFIG_DIR / "train.yaml")
    lines = [
        "usage: rlhf-train [group=option ...] [key=value ...]         one run (its dir: logs/<method>/runs/<date>/<time>)",
        "       rlhf-train -m [key=v1,v2 ...] [hparams_search=optuna]  a sweep: one run per job",
        "       rlhf-train [overrides] --cfg job | --help              the composed config | this page, for that method",
        "",
        f"Config groups ({CONFIG_DIR}/<group>/<option>.yaml); select with group=option, * marks the default:",
    ]
    for group, options in _options(user_dirs).items():
        default = _choice(defaults, group)
        marked = [f"{o}*" if o == default else o for o in options]
        lines += _wrapped(f"  {group:<15} ", marked, 18)
    lines.append("  Your own options: hydra.searchpath=[file:///abs/dir] adds dir/<group>/*.yaml (e.g. dir/experiment/).")
    choice = _method_choice(overrides, user_dirs)
    schema = selected_schema("method", [*overrides, f"method={choice}"]) if choice else None
    lines.append("")
    if schema is None:
        known = ", ".join(_options(user_dirs)["method"]) or ", ".join(SCHEMAS["method"])
        lines.append(f"method={choice}: no such option of the method group (options: {known}).")
        return "\n".join(lines)
    # The defaults a run gets: the schema's, then the method option's YAML, then the experiment overlay's method: keys
    values = {f.name: _schema_default(f) for f in dataclasses.fields(schema)}
    path = _find_option("method", choice, user_dirs)
    values = _merge(values, {k: v for k, v in _yaml(path).items() if k != "defaults"} if path else {})
    experiment = next((o.partition("=")[2] for o in reversed(overrides) if o.lstrip("+").startswith("experiment=")),
                      None)
    overlay = _find_option("experiment", experiment, user_dirs) if experiment else None
    values = _merge(values, (_yaml(overlay).get("method") or {}) if overlay else {})
    target = next((f.default for f in dataclasses.fields(schema) if f.name == "_target_"), None)
    lines.append(f"Keys of method={choice} ({target or schema.__name__}) as key=default, help (allowed values):")
    rows = []
    for key, default, allowed, text in method_keys(schema, values):
        if len(default) > MAX_DEFAULT:
            default = default[:MAX_DEFAULT - 2] + ("…}" if default.startswith("{") else "…")
        rows.append((f"{key}={default}" if default else key,
                     f"{text} ({allowed.replace(' ', NBSP)})" if allowed else text))
    lines += _table(rows, budget=MAX_LINES - len(lines) - 2)
    lines += ["", "Every other key: rlhf-train <overrides> --cfg job. Hydra's own flags: rlhf-train --hydra-help"]
    return "\n".join(lines)
