"""The rule for model, manifest and image names: one text for the embedded backend, which
enforces it, and for the notebook side, which checks a name before it uploads anything."""

from __future__ import annotations

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_MAX_LENGTH = 255
NAME_RULE = "use letters, digits, '.', '_' and '-', starting with a letter or digit"


def is_valid_name(name: str) -> bool:
    return 0 < len(name) <= NAME_MAX_LENGTH and re.match(NAME_PATTERN, name) is not None
