"""The kinds of output `emseg predict` writes; a torch-free module so the CLI parser can import it."""

OUTPUT_KINDS = ("proba", "mask", "cells", "overlay")

#: cell/membrane threshold of `emseg predict` for a model file that carries no validated one
FALLBACK_THRESHOLD = 0.5
