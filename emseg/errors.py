"""The exception type that entry points turn into a single clear error line."""

from __future__ import annotations


class EmsegError(Exception):
    """A user-facing error: bad input, bad params, a missing file.

    The message must name the offending file or params key. Entry points print
    ``error: <message>`` on one line and exit non-zero (traceback only with ``--debug``).
    """


class ColourImageError(EmsegError):
    """An image has colour channels where a grey one is required (callers may convert instead)."""
