"""Training methods. Every method package has the same shape: ``config.py`` (its ``method`` and ``data`` schemas),
``module.py`` (the LightningModule), ``datamodule.py`` (the DataModule); ``rlhf.config.registry.METHODS`` lists them.
A package exports its classes lazily (``lazy_exports``), so importing its schemas does not import torch models."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, classes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``classes[name]`` (a submodule of ``package``) on first use."""

    def __getattr__(name: str) -> Any:
        if name in classes:
            return getattr(importlib.import_module(f"{package}.{classes[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
