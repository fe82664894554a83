"""amlmm_magics: from the model in your notebook to a key-protected scoring web service.

Importing this package is deliberately cheap: nothing here imports IPython, pandas,
ipywidgets, azure-identity or the server stack; each layer imports them when a command needs
them. ``%load_ext amlmm_magics`` registers the ``%amlmm`` / ``%%amlmm`` magics.
"""

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext amlmm_magics`` (idempotent)."""
    from amlmm_magics.notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext amlmm_magics``."""
    from amlmm_magics.notebook.magics import unload

    unload(ipython)
