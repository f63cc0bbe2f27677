"""Build a Scorer from its config (``rlhf.config.common.ScorerConf``): a gold scorer, a reward-model export, any Python
callable, or a weighted sum of those."""

from __future__ import annotations

import importlib
from typing import Any

from rlhf.config.common import ScorerConf
from rlhf.config.fields import as_config
from rlhf.errors import ConfigError
from rlhf.scoring.base import CallableScorer, CheckedScorer, Scorer, WeightedSum


def _import(target: str, key: str) -> Any:
    module_name, _, attr = target.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{key}={target!r} cannot be imported ({err}); give 'package.module.function'") from err


def build_scorer(spec: Any, key: str = "method.reward", device: str = "cpu") -> CheckedScorer | None:
    """``spec`` is a ``ScorerConf`` (or a partial mapping of one) with ``kind``: gold (``name``), reward_model
    (``path``, ``normalize``), callable (``target``, ``completion_only``) or weighted_sum (``components``: a list of
    scorer specs with a ``weight`` each). The scorer comes wrapped in :class:`CheckedScorer`: its output is checked
    (type, length, finiteness) at every call."""
    if spec is None:
        return None
    spec = as_config(ScorerConf, spec, key)
    if spec.kind in (None, "none"):
        return None
    scorer = _build(spec, key, device)
    detail = spec.name if spec.kind == "gold" else spec.target or spec.path
    return CheckedScorer(scorer, f"{key} (kind={spec.kind}{', ' + str(detail) if detail else ''})")


def _build(spec: ScorerConf, key: str, device: str) -> Scorer:
    kind = spec.kind
    if kind == "gold":
        from rlhf.scoring.gold import gold_scorer

        try:
            return gold_scorer(spec.name)
        except ValueError as err:
            raise ConfigError(f"{key}.name: {err}") from err
    if kind == "reward_model":
        from rlhf.scoring.reward_model import RewardModelScorer

        if not spec.path:
            raise ConfigError(f"{key}.kind=reward_model needs {key}.path (a reward-model run's export/ directory)")
        try:
            return RewardModelScorer(spec.path, batch_size=spec.batch_size, normalize=spec.normalize, device=device)
        except OSError as err:
            raise ConfigError(f"{key}.path={spec.path!r} is not a reward-model export ({err})") from err
    if kind == "callable":
        if not spec.target:
            raise ConfigError(f"{key}.kind=callable needs {key}.target ('package.module.function')")
        fn = _import(spec.target, f"{key}.target")
        if isinstance(fn, type):  # a Scorer class: instantiate it without arguments
            fn = fn()
        if hasattr(fn, "score"):
            return fn
        return CallableScorer(fn, completion_only=spec.completion_only)
    if kind == "weighted_sum":
        if not spec.components:
            raise ConfigError(f"{key}.kind=weighted_sum needs {key}.components (a list of scorers with weights)")
        keys = [f"{key}.components[{i}]" for i in range(len(spec.components))]
        parts = [as_config(ScorerConf, c, k) for c, k in zip(spec.components, keys)]
        return WeightedSum([build_scorer(part, k, device) for part, k in zip(parts, keys)], [p.weight for p in parts])
    raise ConfigError(f"{key}.kind={kind!r} is not known; use gold, reward_model, callable or weighted_sum")
