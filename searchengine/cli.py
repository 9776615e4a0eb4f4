"""The `searchengine` command: parse, call Engine, render. No indexing or ranking logic here.

A cold `searchengine search` is a latency target (DESIGN.md), so this module imports nothing
heavy at load: `main` parses a well-formed `search` with the standard library and runs it;
every other command, `--help` and anything the small parser is unsure of go to the Typer app
in commands.py, which owns the options and their help. Both run `run_search`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from searchengine.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from searchengine.engine import Engine
    from searchengine.types import Hit, Hits

T = TypeVar("T")


@cache
def out() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """A user mistake: one line on stderr, no traceback, exit status `code`."""
    err().print(f"[red]error:[/red] {message}", markup=True)
    raise SystemExit(code)


def open_engine(index: Path | None, *, create: bool = False, **kw: Any) -> Engine:
    from searchengine.engine import Engine

    try:
        return Engine(index, create=create, **kw)
    except UserError as exc:
        fail(str(exc))


def types_list(value: str | None) -> list[str] | None:
    return [t for t in value.split(",") if t.strip()] if value else None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def with_engine(index: Path | None, call: Callable[[Engine], T], *, readonly: bool = True) -> T:
    """Open the index (read-only unless the call writes), run one call, close it; a user
    mistake becomes one line on stderr."""
    engine = open_engine(index, readonly=readonly)
    try:
        return call(engine)
    except UserError as exc:
        fail(str(exc))
    finally:
        engine.close()


def show_hits(hits: list[Hit] | Hits, json_out: bool) -> None:
    """The hits (JSON: the list DESIGN.md promises), then, when the adaptive cutoff left
    some of the page out, one line saying so (with --json, a JSON object `{"cut": n}` on
    stderr, so stdout stays the list)."""
    reading = getattr(hits, "reading", None)
    if reading is not None and reading.changed():  # how the words were read, first
        if json_out:
            sys.stderr.write(json.dumps({"reading": reading.to_json()}, ensure_ascii=False) + "\n")
        else:
            out().print(f"read as: {reading.describe()}", markup=False)
            for note in reading.notes:
                out().print(f"  note: {note}", markup=False, style="dim")
    if json_out:
        print_json([h.to_json() for h in hits])
    else:
        render_hits(hits)
    cut = getattr(hits, "cut", 0)
    if cut:
        note = f"{cut} more below the cutoff; --all shows them"
        if json_out:
            sys.stderr.write(json.dumps({"cut": cut, "note": note}) + "\n")
        else:
            out().print(note, markup=False, style="dim")


def render_hits(hits: list[Hit]) -> None:
    if not hits:
        out().print("no matches")
        return
    for rank, hit in enumerate(hits, 1):
        when = f" {_day(hit.date)}" if hit.date is not None else ""
        out().print(
            f"[bold]{rank:>2}. {hit.path}[/bold]  [dim]{hit.type} {hit.score:.3f}{when}[/dim]"
        )
        for seg in hit.segments[:2]:
            place = seg.where(hit.type)
            where = f"[{place}] " if place else ""
            who = f"{seg.speaker}: " if seg.speaker else ""
            if seg.text:
                out().print(f"     {where}{who}{seg.text}", markup=False)
            elif seg.speaker:
                out().print(f"     {where}{seg.speaker} speaks", markup=False)


def _day(epoch: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d")


def run_search(
    query: str,
    *,
    index: Path | None = None,
    k: int | None = None,
    all_: bool = False,
    type_: str | None = None,
    path: str | None = None,
    after: str | None = None,
    before: str | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    min_score: float = 0.0,
    like: Path | None = None,
    negative: str | None = None,
    diverse: bool = True,
    place: str | None = None,
    literal: bool = False,
    sort: str = "relevance",
    include_self: bool = False,
    speaker: str | None = None,
    json_out: bool = False,
) -> None:
    """`searchengine search`, whichever parser read the command line. Without -k or --all
    the page's tail is cut where scores fall away (searchengine/cutoff.py). A line before
    the hits (stderr with --json) tells how the words were read (searchengine/understand)."""
    if not query.strip() and like is None:
        fail("the query is empty")
    hits = with_engine(
        index,
        lambda engine: engine.search(
            query,
            k=k,
            types=types_list(type_),
            path=path,
            after=after,
            before=before,
            min_duration=min_duration,
            max_duration=max_duration,
            min_score=min_score,
            like=like,
            negative=negative,
            diverse=diverse,
            cutoff=False if all_ else None,
            place=place,
            literal=literal,
            sort=sort,
            include_self=include_self,
            speaker=speaker,
        ),
    )
    show_hits(hits, json_out)


# ---- the quick parser of `search` --------------------------------------------------------

INT = re.compile(r"[+-]?[0-9]+")
FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class Unsure(Exception):
    """The quick parser leaves this command line to Typer (help, errors, anything unusual)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Unsure(message)


def _matching(pattern: re.Pattern[str], convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(value: str) -> T:
        if not pattern.fullmatch(value):
            raise Unsure(value)
        return convert(value)

    return parse


def _path(value: str) -> Path:
    if not value:
        raise Unsure("empty path")
    return Path(value)


@cache
def search_parser() -> argparse.ArgumentParser:
    """`searchengine search`'s options as commands.py declares them (a test keeps the two
    in step); help and error messages are Typer's alone."""
    number = _matching(FLOAT, float)
    parser = _Parser(prog="searchengine search", add_help=False, allow_abbrev=False)
    parser.add_argument("query")
    parser.add_argument("--index", type=_path, default=None)
    parser.add_argument("-k", type=_matching(INT, int), default=None)
    parser.add_argument("--all", dest="all_", action="store_true", default=False)
    parser.add_argument("--type", dest="type_", default=None)
    parser.add_argument("--path", default=None)
    parser.add_argument("--after", default=None)
    parser.add_argument("--before", default=None)
    parser.add_argument("--min-duration", type=number, default=None)
    parser.add_argument("--max-duration", type=number, default=None)
    parser.add_argument("--min-score", type=number, default=0.0)
    parser.add_argument("--like", type=_path, default=None)
    parser.add_argument("--not", dest="negative", default=None)
    parser.add_argument("--diverse", dest="diverse", action="store_true", default=True)
    parser.add_argument("--no-diverse", dest="diverse", action="store_false")
    parser.add_argument("--place", default=None)
    parser.add_argument("--literal", action="store_true", default=False)
    parser.add_argument("--sort", default="relevance")
    parser.add_argument("--include-self", action="store_true", default=False)
    parser.add_argument("--speaker", default=None)
    parser.add_argument("--json", dest="json_out", action="store_true", default=False)
    return parser


def quick_search_args(argv: list[str]) -> dict[str, Any] | None:
    """`run_search`'s arguments when `argv` is a plain, valid `search` command line; None
    leaves it to Typer."""
    if not argv or argv[0] != "search" or any(a in ("--help", "-h") for a in argv[1:]):
        return None
    args = list(argv[1:])
    for i, arg in enumerate(args[:-1]):
        if arg == "--sort" and args[i + 1].startswith("-"):  # "--sort -date", as click reads it
            args[i : i + 2] = [f"--sort={args[i + 1]}"]
            break
    try:
        return vars(search_parser().parse_args(args))
    except (Unsure, argparse.ArgumentError):
        return None


def main(argv: list[str] | None = None) -> None:
    """The `searchengine` command (the console script's entry point)."""
    args = sys.argv[1:] if argv is None else list(argv)
    quick = quick_search_args(args)
    if quick is not None:
        run_search(quick.pop("query"), **quick)
        return
    from searchengine.commands import app

    app(args=args)


def __getattr__(name: str) -> Any:
    if name == "app":  # the Typer app, for callers that import it from here
        from searchengine.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
