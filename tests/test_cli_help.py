"""``rlhf-train --help``: one short page with the groups and the selected method's documented keys (rlhf/cli_help.py)."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pytest

from rlhf.cli_help import help_page
from rlhf.config import CONFIG_DIR, SCHEMAS


def _flat(text: str) -> str:
    return " ".join(text.split())  # the page wraps long help texts


def _documented(schema: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(schema) if (f.metadata or {}).get("help")]


def test_ppo_page_is_short_and_documents_kl_coef():
    page = help_page(["method=ppo", "--help"])
    lines = page.splitlines()
    assert len(lines) < 80, f"{len(lines)} lines"
    kl = next(f for f in dataclasses.fields(SCHEMAS["method"]["ppo"]) if f.name == "kl_coef")
    assert "method.kl_coef=0.05" in page and _flat(kl.metadata["help"]) in _flat(page)
    assert "(>= 0.0)" in page  # its range
    assert "one of gae|rloo" in page  # method.advantage's choices
    assert "method.reward.*={kind: gold, …}" in page  # a nested scorer: one line, led by its first setting
    groups = [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")
              and not line.strip().startswith("method.")]
    assert "schema" not in groups and "hydra" not in groups and not any("schema/" in line for line in lines)
    assert {"method", "model", "data", "experiment", "trainer"} <= set(groups)
    from rlhf.config import METHODS

    options = [f"{m}{'*' if m == 'mlm' else ''}" for m in sorted(METHODS)]  # * marks the default
    assert ["method", *[o + "," for o in options[:-1]], options[-1]] in [line.split() for line in lines]


@pytest.mark.parametrize("method", sorted(SCHEMAS["method"]))
def test_every_method_page_lists_each_documented_key_with_its_help(method):
    schema = SCHEMAS["method"][method]
    page = help_page([f"method={method}"])
    assert len(page.splitlines()) < 80
    assert f"Keys of method={method} " in page
    for f in _documented(schema):
        nested = dataclasses.is_dataclass(f.default_factory()) if f.default_factory is not dataclasses.MISSING \
            else False
        assert (f"method.{f.name}.*" if nested else f"method.{f.name}=") in page, f.name
        assert _flat(f.metadata["help"]) in _flat(page), f.name
        if f.metadata.get("choices"):
            assert "one of " + "|".join(map(str, f.metadata["choices"])) in page, f.name


def test_defaults_come_from_the_method_option_and_the_experiment():
    default = help_page([])
    assert "Keys of method=mlm " in default
    assert "method.lr=0.001 " in default  # rlhf/conf/method/mlm.yaml sets 1e-3 (the schema says 5e-4)
    ppo_tiny = help_page(["experiment=ppo_tiny", "--help"])
    assert "Keys of method=ppo " in ppo_tiny
    assert "method.gold.*={kind: gold, …}" in ppo_tiny  # the experiment's overlay of method.gold
    assert "method.gold.*={kind: none, …}" in help_page(["method=ppo"])
    later_wins = help_page(["experiment=ppo_tiny", "method=pwp"])
    assert "Keys of method=pwp " in later_wins


def test_user_search_path_options_are_listed_and_select_the_method(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "my_ppo.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        defaults:
          - override /method: ppo
        method:
          kl_coef: 0.123
    """))
    page = help_page([f"hydra.searchpath=[file://{tmp_path}]", "experiment=my_ppo", "--help"])
    assert "my_ppo" in next(line for line in page.splitlines() if line.startswith("  experiment "))
    assert "Keys of method=ppo " in page and "method.kl_coef=0.123 " in page


def test_unknown_method_names_the_options():
    page = help_page(["method=nope"])
    assert "method=nope: no such option of the method group (options: classify, dpo, kto, mlm, ppo, pwp, reward, sft)" in page
    assert str(CONFIG_DIR) in page  # the groups are still listed


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_rlhf_train_main_prints_the_page_instead_of_hydras_help(monkeypatch, capsys, flag):
    from rlhf import train

    monkeypatch.setattr(sys, "argv", ["rlhf-train", "method=ppo", flag])
    assert train.main() is None  # returns before Hydra runs: no run dir, exit status 0
    out = capsys.readouterr().out
    assert out.strip() == help_page(["method=ppo", flag]).strip()
    assert "Powered by Hydra" not in out and "== Config ==" not in out
