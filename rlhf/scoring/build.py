"""Build a Scorer from its config (``rlhf.config.ScorerConf``): a gold scorer, a reward-model export, any Python
callable, or a weighted sum of those."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from rlhf.config import ConfigError
from rlhf.scoring.base import CallableScorer, CheckedScorer, Scorer, WeightedSum


def _import(target: str, key: str) -> Any:
    module_name, _, attr = target.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{key}={target!r} cannot be imported ({err}); give 'package.module.function'") from err


def build_scorer(spec: Mapping | None, key: str = "method.reward", device: str = "cpu") -> CheckedScorer | None:
    """``spec`` is a plain dict with ``kind``: gold (``name``), reward_model (``path``, ``normalize``), callable
    (``target``, ``completion_only``) or weighted_sum (``components``: a list of specs with a ``weight`` each). The
    scorer comes wrapped in :class:`CheckedScorer`: its output is checked (type, length, finiteness) at every call."""
    if spec is None or spec.get("kind") in (None, "none"):
        return None
    scorer = _build(spec, key, device)
    detail = spec.get("name") if spec["kind"] == "gold" else spec.get("target") or spec.get("path")
    return CheckedScorer(scorer, f"{key} (kind={spec['kind']}{', ' + str(detail) if detail else ''})")


def _build(spec: Mapping, key: str, device: str) -> Scorer:
    kind = spec["kind"]
    if kind == "gold":
        from rlhf.scoring.gold import gold_scorer

        try:
            return gold_scorer(spec.get("name") or "vader")
        except ValueError as err:
            raise ConfigError(f"{key}.name: {err}") from err
    if kind == "reward_model":
        from rlhf.scoring.reward_model import RewardModelScorer

        path = spec.get("path")
        if not path:
            raise ConfigError(f"{key}.kind=reward_model needs {key}.path (a reward-model run's export/ directory)")
        try:
            return RewardModelScorer(path, batch_size=int(spec.get("batch_size") or 64),
                                     normalize=bool(spec.get("normalize", True)), device=device)
        except OSError as err:
            raise ConfigError(f"{key}.path={path!r} is not a reward-model export ({err})") from err
    if kind == "callable":
        target = spec.get("target")
        if not target:
            raise ConfigError(f"{key}.kind=callable needs {key}.target ('package.module.function')")
        fn = _import(target, f"{key}.target")
        if isinstance(fn, type):  # a Scorer class: instantiate it without arguments
            fn = fn()
        if hasattr(fn, "score"):
            return fn
        return CallableScorer(fn, completion_only=bool(spec.get("completion_only", True)))
    if kind == "weighted_sum":
        components = list(spec.get("components") or [])
        if not components:
            raise ConfigError(f"{key}.kind=weighted_sum needs {key}.components (a list of scorers with weights)")
        scorers = [build_scorer(c, f"{key}.components[{i}]", device) for i, c in enumerate(components)]
        return WeightedSum(scorers, [float(c.get("weight", 1.0)) for c in components])
    raise ConfigError(f"{key}.kind={kind!r} is not known; use gold, reward_model, callable or weighted_sum")
