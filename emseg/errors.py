"""The user-facing exception, and the runner that turns it into one clear error line.

Every entry point (the `emseg` subcommands and the DVC stage scripts) runs its body
through [`run_with_clean_errors`][emseg.errors.run_with_clean_errors]: an
[`EmsegError`][emseg.errors.EmsegError] becomes `prog: error: <message>` and exit status 2;
an interrupt (Ctrl-C or `kill -TERM`) unwinds the body like an exception, so that every
temporary file of [`atomic_output`][emseg.io.atomic.atomic_output] is removed on the way out.
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
    `error: <message>` on one line and exit non-zero (a traceback only with `--debug`).
    """


class ColourImageError(EmsegError):
    """An image has colour channels where a grey one is required (callers may convert it instead)."""


class Cancelled(Exception):
    """A run stopped by its user (the napari plugin's cancel button): raised from a progress callback, nothing is kept."""


class Terminated(BaseException):
    """SIGTERM received: raised in the main thread so that cleanup runs as for Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM raises [`Terminated`][emseg.errors.Terminated] instead of killing the process at once.

    Python's default for SIGTERM ends the process without unwinding, so `finally` blocks
    (the removal of temporary outputs) never run; SIGINT already raises `KeyboardInterrupt`.
    Outside the main thread, where signals cannot be handled, the block runs unchanged.
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
    """Call `func()` and turn what ends it into an exit status and at most one line on stderr.

    Args:
        func: The entry point's body; its return value (None: 0) is the exit status.
        debug: Re-raise an [`EmsegError`][emseg.errors.EmsegError] (its traceback shown)
            instead of printing one line.
        prog: The program name that starts the error line.

    Returns:
        The exit status: `func`'s; 2 after an `EmsegError` (`prog: error: <message>`); 130 after
        Ctrl-C; 128 + SIGTERM after `kill -TERM`; 141 when the reader of stdout went away
        (`emseg models | head`).
    """
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
