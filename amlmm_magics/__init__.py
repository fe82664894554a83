"""amlmm_magics: from the model in your notebook to a key-protected scoring web service.

Importing this package is deliberately cheap: nothing here imports pandas, ipywidgets,
azure-identity or the server stack; each layer imports them when a command needs them.
"""

__version__ = "0.1.0"
