"""`emseg compare`: is B better than A? Paired differences of per-slice scores, with block-bootstrap intervals.

The command's `--help` text is this module's `HELP`; the
[command-line reference](../../cli.md) shows it for every subcommand.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

from emseg.config.defaults import BLOCK_SLICES, CONFIDENCE
from emseg.config.layout import CV_FOLD_FILES
from emseg.errors import EmsegError
from emseg.evaluation.score_names import COMPARED

#: the `--help` text
HELP = """emseg compare A B: is B better than A? Paired differences of per-slice scores, with intervals.

A and B are per-slice result tables of the same slices: a file (JSON rows as the
pipelines write them, or CSV/TSV with a header), a folder holding per_slice.json
(cv/ of a cross-validation run, metrics/plots/ of an evaluate run), or a git
revision or dvc exp name whose commit holds the table (--table, default
cv/per_slice.json). For each score: the mean of A and of B, the mean paired
difference B - A over the slices with its block-bootstrap interval (contiguous slices
resampled together, as they are correlated), and a verdict: better, worse or not
distinguishable (the interval holds zero). dvc metrics diff is the quick look; this
is the honest one.

--common compares the slices both tables hold and says how many: e.g. the folds a
running cross-validation has finished (a folder of folds, cv/folds/, gathers each
finished fold's plots/per_slice.json) against the same slices of a whole run.

--pair A2 B2 adds the same comparison run again with another seed (repeatable): each
slice's difference is averaged over the pairs before the bootstrap, so the verdict is of
the seed-averaged difference, and a training's seed-to-seed spread cannot pass for a gain
that only one seed shows.
"""


#: compared when present in both tables: the segmentation's cells, the validated-threshold scores, then the challenge's
DEFAULT_TABLE = "cv/per_slice.json"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `emseg compare` parser to `subparsers` (its description is `HELP`)."""
    parser = subparsers.add_parser(
        "compare",
        help="paired comparison of two per-slice result tables, with intervals (better / worse / not distinguishable)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("a", metavar="A", help="the baseline: a table file, a folder with per_slice.json, a git revision or dvc exp name")
    parser.add_argument("b", metavar="B", help="the candidate, of the same kinds")
    parser.add_argument("--metrics", help=f"comma-separated scores (default: those of {','.join(COMPARED)} in both tables)")
    parser.add_argument("--table", default=DEFAULT_TABLE, help="the table's path inside a revision (default: %(default)s)")
    parser.add_argument("--block", type=int, default=BLOCK_SLICES, help="contiguous slices resampled together (default: %(default)s)")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE, help="confidence level (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the comparison as JSON")
    parser.add_argument("--common", action="store_true", help="compare the slices both tables hold (default: they must hold the same)")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("A2", "B2"),
                        help="the same comparison with another seed (repeatable): differences averaged over the pairs")
    parser.set_defaults(handler=run)


def _parse(text: str, origin: str) -> list[dict[str, Any]]:
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            rows = json.loads(text)
        else:
            dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text), dialect=dialect)]
    except (json.JSONDecodeError, ValueError, IndexError) as exc:
        raise EmsegError(f"{origin}: not a per-slice table (JSON rows or CSV/TSV with a header: {exc})") from None
    if not rows or not all(isinstance(row, dict) and "slice" in row for row in rows):
        raise EmsegError(f"{origin}: not a per-slice table (needs rows with a 'slice' column)")
    return rows


def _git_show(revision: str, table: str) -> str | None:
    for candidate in (revision, *_experiment_refs(revision)):
        done = subprocess.run(["git", "show", f"{candidate}:{table}"], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
    return None


def _experiment_refs(name: str) -> list[str]:
    done = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], capture_output=True, text=True)
    return [ref for ref in done.stdout.split() if ref.rsplit("/", 1)[-1] == name]


def read_table(source: str, table: str = DEFAULT_TABLE) -> list[dict[str, Any]]:
    """The rows of a per-slice table given as a file, a folder, a git revision or a DVC experiment name."""
    path = Path(source)
    if path.is_dir():
        folds = sorted(path.glob(f"*/{CV_FOLD_FILES['per_slice']}"))
        if not (path / "per_slice.json").is_file() and folds:  # a cross-validation's folds, those finished so far
            return [row for fold in folds for row in _parse(fold.read_text(), str(fold))]
        path = path / "per_slice.json"
        if not path.is_file():
            raise EmsegError(f"{source}: folder holds no per_slice.json")
    if path.is_file():
        return _parse(path.read_text(), str(path))
    text = _git_show(source, table)
    if text is None:
        raise EmsegError(f"{source}: no such file or folder, and no git revision or dvc experiment holding {table}")
    return _parse(text, f"{source}:{table}")


def paired_columns(
    a: list[dict[str, Any]], b: list[dict[str, Any]], metrics: list[str] | None, common: bool = False
) -> tuple[list[int], list[str]]:
    """The slices (the same in both tables, in slice order) and the scores to compare.

    With `common`, the slices both tables hold (at least one).

    Raises:
        EmsegError: The tables score different slices (without `common`; with it, none in
            common), list a slice twice, or lack a score asked for.
    """
    slices_a, slices_b = sorted(int(r["slice"]) for r in a), sorted(int(r["slice"]) for r in b)
    if common:
        shared = set(slices_a) & set(slices_b)
        if not shared:
            raise EmsegError("--common: A and B hold no slice in common")
        slices_a = [s for s in slices_a if s in shared]
        slices_b = [s for s in slices_b if s in shared]
    if slices_a != slices_b:
        only = sorted(set(slices_a) ^ set(slices_b))
        raise EmsegError(f"A and B scored different slices ({len(slices_a)} and {len(slices_b)}; not in both: {only[:10]})")
    if len(set(slices_a)) != len(slices_a):
        raise EmsegError("a table lists a slice twice")
    common = set(a[0]) & set(b[0])
    chosen = metrics or [m for m in COMPARED if m in common]
    missing = [m for m in chosen if m not in common]
    if missing or not chosen:
        raise EmsegError(f"--metrics: {', '.join(missing) or '(none)'} not in both tables (both have: {', '.join(sorted(common - {'slice'}))})")
    return slices_a, chosen


def compare(
    a: list[dict[str, Any]],
    b: list[dict[str, Any]],
    metrics: list[str] | None,
    block: int,
    confidence: float,
    common: bool = False,
    more: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] | None = None,
) -> list[dict[str, Any]]:
    """Compare two per-slice tables, score by score.

    Args:
        a: The baseline's rows.
        b: The candidate's rows.
        metrics: The scores to compare; None: those of `COMPARED` that both tables hold.
        block: Contiguous slices resampled together by the bootstrap.
        confidence: The confidence level of the intervals.
        common: Compare the slices both tables hold, not all of them.
        more: Further (baseline, candidate) pairs of the same comparison, e.g. other seeds:
            each slice's scores are averaged over all pairs before the paired difference.

    Returns:
        One result per score: the means of A and B, the paired difference B - A with its
        interval, and the verdict (see [`verdict`][emseg.evaluation.statistics.verdict]).

    Raises:
        EmsegError: A pair cannot be paired (see [`paired_columns`][emseg.cli.compare.paired_columns]),
            or the pairs do not score the same slices and scores.
    """
    from emseg.evaluation.statistics import mean_interval, paired_difference, verdict  # scipy: only when comparing

    pairs = [(a, b), *(more or [])]
    columns = [paired_columns(pa, pb, metrics, common) for pa, pb in pairs]
    slices, chosen = columns[0]
    for index, (other_slices, other_chosen) in enumerate(columns[1:], start=2):
        if other_slices != slices or other_chosen != chosen:
            raise EmsegError(f"--pair {index}: its tables score other slices or scores than A and B "
                             f"({len(other_slices)} slices of {', '.join(other_chosen)} against {len(slices)} of {', '.join(chosen)})")
    indexed = [({int(r["slice"]): r for r in pa}, {int(r["slice"]): r for r in pb}) for pa, pb in pairs]
    results = []
    for metric in chosen:
        values_a = [sum(float(by_a[s][metric]) for by_a, _ in indexed) / len(indexed) for s in slices]
        values_b = [sum(float(by_b[s][metric]) for _, by_b in indexed) / len(indexed) for s in slices]
        difference = paired_difference(values_a, values_b, slices, block, confidence)
        results.append({
            "metric": metric,
            "a": mean_interval(values_a, slices, block, confidence).mean,
            "b": mean_interval(values_b, slices, block, confidence).mean,
            "difference": difference.mean,
            "ci_low": difference.low,
            "ci_high": difference.high,
            "blocks": difference.blocks,
            "slices": len(slices),
            "pairs": len(pairs),
            "verdict": verdict(metric, difference),
        })
    return results


def run(args: argparse.Namespace) -> int:
    """Run `emseg compare` with its parsed arguments; the exit status."""
    if args.block < 1:
        raise EmsegError(f"--block must be at least 1, got {args.block}")
    if not 0.0 < args.confidence < 1.0:
        raise EmsegError(f"--confidence must lie in (0, 1), got {args.confidence:g}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    a, b = read_table(args.a, args.table), read_table(args.b, args.table)
    more = [(read_table(pa, args.table), read_table(pb, args.table)) for pa, pb in args.pair]
    results = compare(a, b, metrics, args.block, args.confidence, args.common, more)
    level = f"{args.confidence:.0%}"
    slices = results[0]["slices"]
    shared = f"the {slices} slices both hold" if args.common else f"{slices} slices"
    print(f"A: {args.a}   B: {args.b}   ({shared}, blocks of {args.block}, {level} intervals of B - A)")
    for index, (pa, pb) in enumerate(args.pair, start=2):
        print(f"A{index}: {pa}   B{index}: {pb}   (each slice's scores averaged over the {len(more) + 1} pairs)")
    print(f"{'score':<30} {'A':>8} {'B':>8} {'B - A':>9} {level + ' interval':>22}  verdict")
    for r in results:
        interval = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        print(f"{r['metric']:<30} {r['a']:8.4f} {r['b']:8.4f} {r['difference']:+9.4f} {interval:>22}  B is {r['verdict']}")
    if args.json is not None:
        from emseg.io.atomic import write_json

        write_json(args.json, {"a": args.a, "b": args.b, "pairs": [list(p) for p in args.pair], "block": args.block, "confidence": args.confidence, "results": results})
    return 0
