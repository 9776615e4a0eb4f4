"""A cold `searchengine search` is a latency target: its process imports only what a query
needs, and the quick parser it uses reads every command line exactly as the Typer app does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from searchengine import cli
from tests.conftest import REPO, write_corpus

NOT_FOR_QUERIES = (
    "torch",
    "transformers",
    "sentence_transformers",
    "open_clip",
    "typer",
    "rich",
    "pydantic",
    "PIL",
    "av",
    "pypdf",
    "dateparser",
    "reverse_geocode",
    "scipy",
)

PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write(
    "\\nMODULES " + json.dumps(sorted(m for m in {names!r} if m in sys.modules)) + "\\n"
))
{body}
"""


def imported_by(body: str, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(names=NOT_FOR_QUERIES, body=body), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    line = [x for x in res.stderr.splitlines() if x.startswith("MODULES ")][-1]
    return res, json.loads(line.removeprefix("MODULES "))


def test_importing_the_package_and_the_command_is_light():
    body = "import searchengine, searchengine.cli\nassert 'sqlalchemy' not in sys.modules"
    res, heavy = imported_by(body)
    assert res.returncode == 0, res.stderr
    assert heavy == []


def test_package_exports_resolve_on_use():
    import searchengine

    assert set(searchengine.__all__) <= set(dir(searchengine))
    from searchengine import Engine, Hit, IndexSummary, UserError, thumbnail

    assert Engine.__name__ == "Engine" and Hit.__name__ == "Hit" and callable(thumbnail)
    assert IndexSummary.__module__ == "searchengine.indexer" and issubclass(UserError, Exception)
    with pytest.raises(AttributeError):
        searchengine.NoSuchThing  # noqa: B018


def test_cli_search_process_imports_only_the_query_path(tmp_path):
    from searchengine import Engine

    index = tmp_path / "index"
    with Engine(index, create=True) as engine:
        engine.index([write_corpus(tmp_path / "docs")])
    body = "sys.argv = ['searchengine'] + sys.argv[1:]\nfrom searchengine.cli import main\nmain()"
    res, heavy = imported_by(body, "search", "growing vegetables", "--index", str(index), "--json")
    assert res.returncode == 0, res.stderr
    assert Path(json.loads(res.stdout.split("\nMODULES")[0])[0]["path"]).name == "garden.md"
    assert heavy == []
    # Plain output is rendered with rich, as before; errors are Typer's.
    res, heavy = imported_by(body, "search", "growing vegetables", "--index", str(index))
    assert res.returncode == 0 and "garden.md" in res.stdout and "rich" in heavy
    res, heavy = imported_by(body, "search", "x", "--index", str(index), "-k", "many")
    assert res.returncode == 2 and "typer" in heavy and "Invalid value for '-k'" in res.stderr


COMMAND_LINES = [
    ["search", "planets"],
    ["search", "planets and moons", "--index", "/tmp/some index", "--json", "-k", "3"],
    ["search", "--json", "beach", "--not", "people", "--no-diverse", "-k", "20"],
    ["search", "tone", "--min-duration", "2.5", "--max-duration", "1e2", "--min-score", ".3"],
    ["search", "meeting", "--path", "keep/*", "--after", "2021-03-10", "--before", "2022"],
    ["search", "--type", "image,video", "--like", "a.jpg", "dogs", "--diverse"],
    ["search", "--index=idx", "-k5", "q", "--min-score", "-1"],
    ["search", "x", "--no-diverse", "--diverse", "-k", "2", "-k", "4"],
    ["search", "beach", "--sort", "-date", "--place", "Lisbon", "--literal", "--include-self"],
    ["search", "photos from 2019", "--sort=date", "--sort", "relevance"],
    ["search", "--", "-k"],
    ["search", ""],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=lambda a: " ".join(a)[:40])
def test_quick_parser_reads_command_lines_as_typer_does(argv, monkeypatch):
    from searchengine import commands

    seen: list[dict] = []
    monkeypatch.setattr(
        commands, "run_search", lambda query, **kw: seen.append({"query": query, **kw})
    )
    commands.app(args=argv, standalone_mode=False)
    assert cli.quick_search_args(argv) == seen[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["search"],
        ["search", "x", "--help"],
        ["search", "-h"],
        ["search", "x", "-k", "many"],
        ["search", "x", "-k", "2.0"],
        ["search", "x", "--min-score", "nan"],
        ["search", "x", "--ind", "idx"],  # click does not expand abbreviations
        ["search", "x", "--index"],
        ["search", "x", "--index", ""],
        ["search", "x", "y"],
        ["search", "x", "--json=yes"],
        ["search", "x", "--unknown"],
        ["similar", "a.jpg"],
        ["--help"],
        [],
    ],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_quick_parser_leaves_anything_else_to_typer(argv):
    assert cli.quick_search_args(argv) is None


def test_quick_parser_knows_every_search_option():
    """A new option of `search` in commands.py must be taught to the quick parser."""
    import typer.main

    from searchengine import commands

    command = typer.main.get_command(commands.app).commands["search"]
    typer_opts = {
        (param.name, tuple(sorted(param.opts + param.secondary_opts)))
        for param in command.params
        if param.name != "help"
    }
    quick = cli.search_parser()
    quick_opts: dict[str, set[str]] = {}
    for action in quick._actions:
        quick_opts.setdefault(action.dest, set()).update(action.option_strings or [action.dest])
    assert {(name, tuple(sorted(opts))) for name, opts in quick_opts.items()} == typer_opts
