"""The IPython side: ``%amlmm`` magics, result display, progress, completion."""
