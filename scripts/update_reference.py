"""Rewrite the magic reference in README.md from the command grammar.

    python scripts/update_reference.py

tests/test_readme.py fails when the README and the grammar drift apart.
"""

from __future__ import annotations

from pathlib import Path

from amlmm_magics.grammar import reference_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def updated(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference_markdown()}{END}{tail}"


if __name__ == "__main__":
    README.write_text(updated(README.read_text()))
    print(f"updated {README}")
