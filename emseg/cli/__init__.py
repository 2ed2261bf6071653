"""The `emseg` command line, and what the DVC stage scripts share.

[`emseg.cli.main`][emseg.cli.main] builds the `emseg` parser from one module per subcommand
(`predict`, `score`, `compare`, `export`, `models`); each subcommand module's docstring is its
`--help` text (the [command-line reference](../../cli.md) prints them all).
[`emseg.cli.stage`][emseg.cli.stage] is the argument parsing and error handling of the
`stages/*.py` scripts that `dvc.yaml` runs.
"""

