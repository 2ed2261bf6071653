import subprocess
import sys

"""The `emseg` entry point: subcommands, usage errors, closed pipes."""

from emseg.cli.main import main


def test_closed_pipe_ends_quietly() -> None:
    """`emseg models | head` must not end in a BrokenPipe traceback."""
    child = subprocess.Popen(
        [sys.executable, "-m", "emseg.cli.main", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.stdout.close()  # the reader leaves before the child (still importing) writes a byte
    _, err = child.communicate(timeout=120)
    assert child.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_unknown_subcommand_is_a_usage_error(capsys) -> None:
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("argparse accepted an unknown subcommand")
    assert "invalid choice" in capsys.readouterr().err
