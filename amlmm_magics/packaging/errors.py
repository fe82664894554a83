"""The one error type of the packaging layer."""

from __future__ import annotations


class PackagingError(Exception):
    """Something in the notebook cannot become a deployable artifact.

    ``str()`` is one line a user can act on: what failed, why, and what to change.
    """
