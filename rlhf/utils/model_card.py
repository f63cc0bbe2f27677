"""The model card (``README.md``) and lineage record (``rlhf_run.json``) of every export.

The card says what the export is, as the Hugging Face Hub reads it (YAML front matter: library, tags, base model,
metrics) and as a person reads it (method, base model, data, the key settings, the held-out metrics, how to load
it). ``rlhf_run.json`` is what a later run that starts from this export reads to declare it as its input (the W&B
artifact it was logged as, the run that made it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

RUN_RECORD = "rlhf_run.json"

LOADERS = {"mlm": "AutoModelForMaskedLM", "reward": "AutoModelForSequenceClassification",
           "ppo": "AutoModelForCausalLM", "pwp": "AutoModelForCausalLM", "sft": "AutoModelForCausalLM",
           "dpo": "AutoModelForCausalLM", "kto": "AutoModelForCausalLM",
           "classify": "AutoModelForSequenceClassification"}
SUMMARIES = {"mlm": "a masked language model", "reward": "a reward model (one score per prompt + response)",
             "ppo": "a policy trained with PPO against a reward", "pwp": "a language model pretrained with human "
                                                                      "preferences (Korbak et al. 2023)",
             "sft": "a causal language model fine-tuned on demonstrations",
             "dpo": "a policy trained by direct preference optimisation on preference pairs",
             "kto": "a policy trained with KTO on unpaired desirable/undesirable feedback",
             "classify": "a sequence classifier (an encoder with a classification head; labels in id2label)"}


def _data_line(data: dict[str, Any]) -> str:
    source = data.get("source") or {}
    kind, path, fmt = source.get("kind"), source.get("path"), source.get("format")
    text = f"`{kind}`" + (f" `{path}`" if path else "") + (f" (format `{fmt}`)" if fmt not in (None, "auto") else "")
    return text


def card_text(config: dict[str, Any], metrics: dict[str, Any], method: str, run_record: dict[str, Any]) -> str:
    """The README.md of an export, from the run's resolved config and final metrics (pure: tested on a dict)."""
    model = config.get("model") or {}
    base = model.get("name_or_path") if model.get("source") == "pretrained" else None
    headline = {k: v for k, v in sorted(metrics.items()) if k.startswith(("test/", "start/test/", "val/"))
                and isinstance(v, (int, float))}
    front = {"library_name": "transformers", "tags": ["rlhf", method, *(config.get("tags") or [])],
             **({"base_model": base} if base else {}),
             "model-index": [{"name": run_record["run_name"], "results": [
                 {"task": {"type": method}, "metrics": [{"name": k, "type": k, "value": float(v)}
                                                        for k, v in headline.items() if k.startswith("test/")]}]}]}
    settings = {k: v for k, v in (config.get("method") or {}).items() if not str(k).startswith("_")}
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {run_record['run_name']}", "",
        f"{SUMMARIES.get(method, method)}, trained with [rlhf](https://github.com/) (`method={method}`"
        + (f", `experiment={config.get('experiment_name')}`" if config.get("experiment_name") else "") + ").", "",
        f"- **Base model**: {f'`{base}`' if base else 'built from config (random init): ' + str(model.get('arch'))}"
        + (f" (LoRA r={model['lora']['r']}, merged)" if (model.get("lora") or {}).get("r") else ""),
        f"- **Data**: {_data_line(config.get('data') or {})}",
        f"- **Seed**: {config.get('seed')}; steps: {int(metrics.get('trainer/global_step', 0))}",
        f"- **Run**: `{run_record['run_dir']}`" + (f" (W&B run `{run_record['wandb_run_id']}`)"
                                                   if run_record.get("wandb_run_id") else ""),
        "", "## Metrics", "", "| metric | value |", "|---|---|",
        *(f"| `{k}` | {v:.4g} |" for k, v in headline.items()),
        "", "## Settings (`method`)", "", "```yaml", yaml.safe_dump(settings, sort_keys=True).strip(), "```",
        "", "## Load", "", "```python", f"from transformers import AutoTokenizer, {LOADERS.get(method, 'AutoModel')}",
        "", "tokenizer = AutoTokenizer.from_pretrained(\"<this directory>\")",
        f"model = {LOADERS.get(method, 'AutoModel')}.from_pretrained(\"<this directory>\")", "```", "",
        "The whole resolved config of the run is in its run directory (`config_resolved.yaml`).", "",
    ]
    return "\n".join(lines)


def write_export_records(export_dir: Path, config: dict[str, Any], metrics: dict[str, Any], method: str,
                         run_record: dict[str, Any]) -> None:
    """``README.md`` (the card) and ``rlhf_run.json`` (lineage) into ``export_dir``."""
    (export_dir / "README.md").write_text(card_text(config, metrics, method, run_record))
    (export_dir / RUN_RECORD).write_text(json.dumps(run_record, indent=2, sort_keys=True) + "\n")


def read_run_record(directory: str | Path | None) -> dict[str, Any] | None:
    """The lineage record of an export this run starts from (None for a hub name or a directory without one)."""
    if not directory:
        return None
    path = Path(str(directory)).expanduser() / RUN_RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
