"""The README's magic reference is the grammar's, and the commands it quotes exist."""

from __future__ import annotations

import importlib.util
import re

from conftest import ROOT

from amlmm_magics.grammar import reference_markdown


def test_the_magic_reference_matches_the_grammar():
    spec = importlib.util.spec_from_file_location("update_reference",
                                                  ROOT / "scripts" / "update_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "README.md").read_text()
    assert module.updated(text) == text, (
        "README.md's magic reference is out of date: run python scripts/update_reference.py")
    assert reference_markdown() in text


def test_the_readme_names_only_scripts_that_exist():
    text = (ROOT / "README.md").read_text()
    for script in set(re.findall(r"(scripts/[\w.]+|bench/[\w.]+|notebooks/[\w.-]+)", text)):
        assert (ROOT / script).exists(), script
