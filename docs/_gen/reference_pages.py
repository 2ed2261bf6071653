"""Reference pages generated at build time (mkdocs-gen-files) from the code itself, so that they cannot drift.

* ``reference/params.md``: every ``params.yaml`` key from the schema (``emseg.config.params``): its type,
  default, constraints and meaning, and the names the registries accept for ``model.arch``,
  ``train.loss`` and ``segment.method`` with their blocks;
* ``reference/cli.md``: every ``emseg`` subcommand's ``--help``, from its own parser;
* ``reference/api/``: one page per module of the package, rendered by mkdocstrings from its docstrings.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
from pathlib import Path
from typing import Any, get_args, get_origin

import mkdocs_gen_files
from pydantic import BaseModel
from pydantic.fields import FieldInfo

PACKAGE = "emseg"
ROOT = Path(__file__).resolve().parents[2]


# ---- parameters ------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    if str(origin) == "typing.Literal":
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if str(origin) == "typing.Annotated":
        return _type_name(get_args(annotation)[0])
    args = ", ".join(_type_name(arg) for arg in get_args(annotation))
    name = getattr(origin, "__name__", str(origin))
    return " \\| ".join(_type_name(arg) for arg in get_args(annotation)) if name in ("UnionType", "Union") else f"{name}[{args}]"


def _constraints(field: FieldInfo) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    from emseg.config.params import Bounds

    found = [str(item) for item in field.metadata if isinstance(item, Bounds)]
    for item in field.metadata:
        for attribute, sign in words.items():
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{sign} {value:g}")
    return ", ".join(found)


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`".replace("'", "") if not isinstance(value, str) else f"`{value}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, key)
            continue
        default = field.get_default(call_default_factory=True)
        rows.append(f"| `{key}` | {_type_name(annotation)} | {_default(default)} | {_constraints(field)} | {field.description or ''} |")
    return rows


def params_page() -> str:
    from emseg.config.params import Params
    from emseg.networks.architectures import REGISTRY, available
    from emseg.segmentation.methods import MAX_GRID, METHODS
    from emseg.training.losses import AFFINITY_LOSSES, LOSSES

    lines = [
        "# Parameters (`params.yaml`)",
        "",
        "Generated from the schema, `emseg.config.params`, the one source of every default; `params.yaml`",
        "spells every key out so that DVC tracks it (a test holds the two equal). Every key is validated",
        "before any work: an unknown key, a wrong type, an out-of-range value or a reversed `[low, high]`",
        "pair stops the stage with one line naming the key. The names below that live in a registry",
        "are checked by the stage that uses that registry (train: networks and losses; evaluate: cell methods).",
        "",
        "The ten that people change most: `data.source`, `model.arch`, `model.target`, `train.steps`,",
        "`train.batch_size`, `train.patch_size`, `train.lr`, `train.loss`, `segment.method`, `base.seed`.",
        "",
    ]
    for block, field in Params.model_fields.items():
        lines += [f"## `{block}`", "", (field.annotation.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "), ""]
        lines += ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |", *_rows(field.annotation, block), ""]
        if block == "model":
            lines += ["### `model.arch` and the `model.<arch>` blocks", "",
                      "A block named after a registered network overrides its constructor arguments (`emseg models` prints "
                      "them with their parameter counts); the chosen network's block, and every block given, must build.", "",
                      "| network | defaults | what it is |", "| --- | --- | --- |"]
            lines += [f"| `{name}` | `{REGISTRY[name].defaults}` | {REGISTRY[name].description} |" for name in available()]
            lines.append("")
        if block == "train":
            lines += ["### `train.loss`", "",
                      f"A boundary model (`model.target: boundary`) takes {', '.join(f'`{n}`' for n in LOSSES)}; "
                      f"an affinity model takes {', '.join(f'`{n}`' for n in AFFINITY_LOSSES)} (masked per offset).", ""]
        if block == "segment":
            lines += ["### `segment.method` and the `segment.<method>` blocks", "",
                      "A block named after a registered cell method sets its settings; a list is a grid that the evaluate "
                      f"stage searches on the validation slices (at most {MAX_GRID} combinations); `{{}}` searches the "
                      "method's own grid. See [Cells and agglomeration](../explanation/cells.md).", "",
                      "| method | defaults | searched when the block is empty | what it does |", "| --- | --- | --- | --- |"]
            for name, method in METHODS.items():
                needs = " (affinity models only)" if method.needs_affinities else ""
                lines.append(f"| `{name}` | `{method.defaults}` | `{method.grid}` | {method.description}{needs} |")
            lines.append("")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------------


def cli_page() -> str:
    from emseg.cli.main import build_parser

    parser = build_parser()
    subcommands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    lines = ["# Command line", "", "Generated from the parsers of `emseg` (`emseg <command> --help` prints the same).", ""]
    for name, sub in subcommands.choices.items():
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            sub.print_help()
        lines += [f"## `emseg {name}`", "", "```text", text.getvalue().rstrip(), "```", ""]
    return "\n".join(lines)


# ---- API -------------------------------------------------------------------------------------


def api_modules() -> list[str]:
    """Every public module of the package, found on disk (nothing is imported)."""
    names = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1 and not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


def summary(name: str) -> str:
    """The first line of a module's docstring (read from the file, nothing imported)."""
    path = ROOT / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return docstring.strip().split("\n")[0]


def write_api_pages() -> None:
    """A page per module, the section's nav (SUMMARY.md, for literate-nav) and its index page."""
    nav = ["- [Overview](index.md)"]
    index = ["# API reference", "", "The package by phase, one page per module, generated from the docstrings; each line is "
             "the module's own first line. Why it is laid out so: [Architecture](../../explanation/architecture.md).", ""]
    for name in api_modules():
        path = Path("reference", "api", *name.split(".")[1:])
        is_package = (ROOT / Path(*name.split("."))).is_dir()
        page = path / "overview.md" if is_package else path.with_suffix(".md")
        with mkdocs_gen_files.open(page, "w") as out:
            out.write(f"# `{name}`\n\n::: {name}\n" + ("    options:\n      members: false\n" if is_package else ""))
        depth = name.count(".") - 1
        link = page.relative_to("reference/api").as_posix()
        nav.append(f"{'    ' * depth}- [`{name}`]({link})")
        index.append(f"{'    ' * depth}- [`{name}`]({link}): {summary(name)}")
    with mkdocs_gen_files.open("reference/api/SUMMARY.md", "w") as out:
        out.write("\n".join(nav) + "\n")
    with mkdocs_gen_files.open("reference/api/index.md", "w") as out:
        out.write("\n".join(index) + "\n")


with mkdocs_gen_files.open("reference/params.md", "w") as page:
    page.write(params_page())
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())
write_api_pages()
