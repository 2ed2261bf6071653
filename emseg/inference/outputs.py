"""The kinds of output `emseg predict` writes; a torch-free module so the CLI parser can import it."""

OUTPUT_KINDS = ("proba", "mask", "cells", "overlay")
