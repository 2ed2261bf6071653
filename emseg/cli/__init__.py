"""The `emseg` command line."""

