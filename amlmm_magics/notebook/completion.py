"""Tab completion of ``%amlmm`` sub-commands, option names and option choices.

A Matcher API v2 matcher (``IPython.core.completer.context_matcher``) appended to
``shell.Completer.custom_matchers``; the grammar is built on the first completion.
"""

from __future__ import annotations

from typing import Any

from IPython.core.completer import CompletionContext, SimpleCompletion, context_matcher

_PREFIXES = ("%amlmm", "%%amlmm")


def candidates(line: str) -> tuple[list[str], str]:
    """Completions for the text before the cursor, and the word they complete."""
    from amlmm_magics.grammar import grammar

    stripped = line.lstrip()
    words = stripped.split()
    if not words or words[0] not in _PREFIXES or (len(words) == 1 and not line.endswith(" ")):
        return [], ""
    tokens = words[1:]
    current = "" if line.endswith((" ", "\t")) else tokens.pop()
    g = grammar()
    path: tuple[str, ...] = ()
    for token in tokens:
        if token in g.children(path):
            path += (token,)
        else:
            break
    children = g.children(path)
    if children and len(path) == len(tokens):
        found = children
    elif tokens and g.takes_value(path, tokens[-1]):
        found = g.choices(path, tokens[-1])  # the option's value: its choices, if any
    elif current.startswith("-") or not current:
        found = g.options(path)
    else:
        found = []
    return [c for c in found if c.startswith(current)], current


@context_matcher(identifier="amlmm_magics.completion")
def matcher(context: CompletionContext) -> dict[str, Any]:
    # Only the magic's own line: in a %%amlmm cell the body is data, not options.
    if context.cursor_line != 0 and not context.line_with_cursor.lstrip().startswith("%amlmm"):
        return {"completions": [], "suppress": False}
    found, current = candidates(context.text_until_cursor)
    if not found or current != context.token:
        return {"completions": [], "suppress": False}
    kind = "param" if current.startswith("-") else "command"
    return {"completions": [SimpleCompletion(text, type=kind) for text in found],
            "suppress": True}
