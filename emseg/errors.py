"""The user-facing exception, and the runner that turns it into one clear error line.

Every entry point (the ``emseg`` subcommands and the DVC stage scripts) runs its body
through :func:`run_with_clean_errors`: an :class:`EmsegError` becomes ``prog: error:
<message>`` and exit status 2; an interrupt (Ctrl-C or ``kill -TERM``) unwinds the body
like an exception, so every ``atomic_output`` temporary file is removed on the way out.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


class EmsegError(Exception):
    """A user-facing error: bad input, bad params, a missing file.

    The message must name the offending file or params key. Entry points print
    ``error: <message>`` on one line and exit non-zero (traceback only with ``--debug``).
    """


class ColourImageError(EmsegError):
    """An image has colour channels where a grey one is required (callers may convert instead)."""


class Terminated(BaseException):
    """SIGTERM received: raised in the main thread so that cleanup runs as for Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` instead of killing the process at once.

    Python's default for SIGTERM ends the process without unwinding, so ``finally`` blocks
    (the removal of temporary outputs) never run; SIGINT already raises KeyboardInterrupt.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_with_clean_errors(func: Callable[[], int | None], debug: bool, prog: str = "emseg") -> int:
    """Call ``func()``; turn an EmsegError into one ``error:`` line and exit status 2."""
    try:
        with terminate_as_exception():
            return int(func() or 0)
    except EmsegError as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # the reader went away (`emseg models | head`): stop quietly, as Unix tools do; point
        # stdout at /dev/null so the interpreter's final flush cannot raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
