"""The Typer app behind `searchengine`: every command, its options and its help.

`searchengine.cli.main` runs a well-formed `search` without it (Typer's start-up is about a
tenth of a second of a cold query) and hands everything else here. No indexing or ranking
logic here: parse, call Engine through cli.py's helpers, render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from searchengine.cli import (
    err,
    fail,
    open_engine,
    out,
    print_json,
    run_search,
    show_hits,
    types_list,
    with_engine,
)
from searchengine.errors import UserError

if TYPE_CHECKING:
    from searchengine.indexer import IndexSummary

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Search your own documents, photos, recordings and videos by meaning.",
)

IndexOpt = Annotated[
    Path | None,
    typer.Option(
        "--index", help="Index folder (default: $SEARCHENGINE_INDEX or the user data dir)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TypeOpt = Annotated[
    str | None, typer.Option("--type", help="Only these types: image,audio,video,text.")
]


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index.")],
    index: IndexOpt = None,
    json_out: JsonOpt = False,
    clip: Annotated[str | None, typer.Option(help="open_clip model name or config JSON.")] = None,
    clip_pretrained: Annotated[
        str | None, typer.Option(help="open_clip pretrained tag or checkpoint file.")
    ] = None,
    clap: Annotated[str | None, typer.Option(help="CLAP model id or folder.")] = None,
    text: Annotated[
        str | None, typer.Option(help="sentence-transformers model id or folder.")
    ] = None,
    speech: Annotated[
        str | None, typer.Option(help="faster-whisper size or folder, or 'off'.")
    ] = None,
    voice: Annotated[
        str | None,
        typer.Option(help="Speaker encoder: 'resemblyzer' (default), a GE2E .pt file, or 'off'."),
    ] = None,
    ocr: Annotated[
        str | None,
        typer.Option(
            help="Read text in images, scanned PDF pages and video frames: 'tesseract' "
            "(default where installed: most accurate), 'rapidocr' (the fallback) or 'off'."
        ),
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Forget files under given paths that are gone.")
    ] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Never use the network: files whose model weights are missing stay pending "
            "(default: missing default models download on first use). "
            "Same as SEARCHENGINE_OFFLINE=1.",
        ),
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Decode and embed on a Ray cluster: ray://HOST:PORT, HOST:PORT or 'auto' "
            "(a running local cluster). Needs searchengine[cluster]."
        ),
    ] = None,
    cluster_workers: Annotated[
        int | None, typer.Option(min=1, help="Ray workers to use (default: one per CPU).")
    ] = None,
) -> None:
    """Index files and folders: new and changed files are embedded, moves followed."""
    if offline:
        os.environ["SEARCHENGINE_OFFLINE"] = "1"
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    models = {
        "clip": clip,
        "clap": clap,
        "text": text,
        "speech": speech,
        "voice": voice,
        "ocr": ocr,
    }
    engine = open_engine(
        index,
        create=True,
        models={k: v for k, v in models.items() if v},
        clip_pretrained=clip_pretrained,
    )
    quiet = json_out or not err().is_terminal
    try:
        with Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[path]}", style="dim"),
            console=err(),
            disable=quiet,
            transient=True,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(phase: str, done: int, total: int, path: str) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total or None, path="")
                short = os.path.basename(path)[:40]
                bar.update(tasks[phase], completed=done, total=total or None, path=short)

            summary = engine.index(
                [str(p) for p in paths],
                progress=progress,
                prune=prune,
                cluster=cluster,
                cluster_workers=cluster_workers,
            )
    except UserError as exc:
        fail(str(exc))
    finally:
        engine.close()
    if json_out:
        print_json(summary.to_json())
    else:
        _render_summary(summary)
    grouped = {why for _, _, why in summary.problems}
    for note in summary.notes:
        if json_out or note not in grouped:  # a pending file's reason is already on its line
            err().print(f"[yellow]note:[/yellow] {note}")


def _render_summary(s: IndexSummary) -> None:
    parts = [
        f"{s.added} added",
        f"{s.changed} changed",
        f"{s.moved} moved",
        f"{s.deleted} deleted",
        f"{s.unchanged} unchanged",
        f"{s.failed} failed",
        f"{s.skipped} skipped",
        f"{s.pending} pending",
    ]
    if s.reembedded:
        parts.append(f"{s.reembedded} re-embedded (a model or the speech setting changed)")
    if s.unreachable:
        parts.append(f"{s.unreachable} unreachable (kept)")
    out().print(", ".join(parts) + f" in {s.seconds:.1f}s")
    for old, new in s.moves[:20]:
        out().print(f"  moved {old} -> {new}")
    for state in ("failed", "skipped", "pending"):
        _print_groups(state, [(p, why) for st, p, why in s.problems if st == state])


EXAMPLES = 3


def group_by_reason(items: list[tuple[str, str]]) -> list[tuple[str, int, list[str]]]:
    """(path, reason) pairs -> (reason, how many, the first few paths), commonest first, so
    28 files waiting for one model read as one line, not 28."""
    groups: dict[str, list[str]] = {}
    for path, why in items:
        groups.setdefault(why, []).append(path)
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))  # stable: first seen first
    return [(why, len(paths), paths[:EXAMPLES]) for why, paths in ranked]


def _print_groups(state: str, items: list[tuple[str, str]]) -> None:
    """One line per reason: the state, a count, a few example paths, then the reason."""
    for why, count, examples in group_by_reason(items):
        why = why or "no reason given"
        if count == 1:
            line = f"{state}: 1 file ({examples[0]}): {why}"
        else:
            more = f", +{count - len(examples)} more" if count > len(examples) else ""
            line = f"{state}: {count} files (e.g. {', '.join(examples)}{more}): {why}"
        out().print(line, markup=False, highlight=False, soft_wrap=True)


AfterOpt = Annotated[
    str | None, typer.Option("--after", help="Only files dated on or after (YYYY-MM-DD).")
]
BeforeOpt = Annotated[
    str | None, typer.Option("--before", help="Only files dated before (YYYY-MM-DD).")
]
MinDurOpt = Annotated[
    float | None, typer.Option("--min-duration", help="Audio/video of at least N seconds.")
]
MaxDurOpt = Annotated[
    float | None, typer.Option("--max-duration", help="Audio/video of at most N seconds.")
]
PathOpt = Annotated[str | None, typer.Option("--path", help="Only paths matching this glob.")]
KOpt = Annotated[
    int | None,
    typer.Option("-k", help="How many files to return (the whole page: no cutoff). [default: 10]"),
]
IncludeSelfOpt = Annotated[
    bool,
    typer.Option(
        "--include-self", help="Also return the example file itself and its exact copies."
    ),
]
AllOpt = Annotated[
    bool,
    typer.Option("--all", help="Show the whole page, also the hits below the adaptive cutoff."),
]


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What you are looking for, in words.")],
    index: IndexOpt = None,
    k: KOpt = None,
    all_: AllOpt = False,
    type_: TypeOpt = None,
    path: PathOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    min_duration: MinDurOpt = None,
    max_duration: MaxDurOpt = None,
    min_score: Annotated[
        float, typer.Option("--min-score", help="Drop hits scoring below this (0..1).")
    ] = 0.0,
    like: Annotated[
        Path | None, typer.Option("--like", help="Add an example file to the query.")
    ] = None,
    negative: Annotated[str | None, typer.Option("--not", help="Words to steer away from.")] = None,
    diverse: Annotated[
        bool, typer.Option("--diverse/--no-diverse", help="Keep near duplicates apart.")
    ] = True,
    place: Annotated[
        str | None,
        typer.Option("--place", help="Only photos and videos taken there (from their GPS)."),
    ] = None,
    literal: Annotated[
        bool,
        typer.Option(
            "--literal", help="Search the words as typed: no dates, kinds or places read."
        ),
    ] = False,
    sort: Annotated[
        str,
        typer.Option(
            "--sort", help="Order of the hits found: relevance, date (oldest first) or -date."
        ),
    ] = "relevance",
    include_self: IncludeSelfOpt = False,
    speaker: Annotated[
        str | None,
        typer.Option("--speaker", help="Only where this speaker talks (a name or an id)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search the index with a text query (optionally with an example file).

    Dates, kinds and places in the words become filters: "beach photos from last summer",
    "short sounds of rain", "videos in Lisbon". The line 'read as:' shows how."""
    run_search(
        query,
        index=index,
        k=k,
        all_=all_,
        type_=type_,
        path=path,
        after=after,
        before=before,
        min_duration=min_duration,
        max_duration=max_duration,
        min_score=min_score,
        like=like,
        negative=negative,
        diverse=diverse,
        place=place,
        literal=literal,
        sort=sort,
        include_self=include_self,
        speaker=speaker,
        json_out=json_out,
    )


@app.command()
def similar(
    file: Annotated[Path, typer.Argument(help="An example file, indexed or not.")],
    index: IndexOpt = None,
    k: KOpt = None,
    all_: AllOpt = False,
    type_: TypeOpt = None,
    path: PathOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    min_duration: MinDurOpt = None,
    max_duration: MaxDurOpt = None,
    include_self: IncludeSelfOpt = False,
    voice: Annotated[
        bool,
        typer.Option(
            "--voice", help="Where the same person speaks (FILE: a recording of that voice)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Find files like an example file (not the file itself, nor its exact copies); with
    --voice, the files and moments where the person speaking in FILE speaks."""
    if voice:
        hits = with_engine(
            index,
            lambda engine: engine.similar_voice(
                str(file), k=k, types=types_list(type_), include_self=include_self
            ),
        )
        show_hits(hits, json_out)
        return
    hits = with_engine(
        index,
        lambda engine: engine.similar(
            str(file),
            k=k,
            types=types_list(type_),
            path_glob=path,
            after=after,
            before=before,
            min_duration=min_duration,
            max_duration=max_duration,
            cutoff=False if all_ else None,
            include_self=include_self,
        ),
    )
    show_hits(hits, json_out)


@app.command()
def recommend(
    files: Annotated[list[Path], typer.Argument(help="Example files you like (indexed or not).")],
    not_: Annotated[
        list[Path] | None,
        typer.Option("--not", help="An example you do not want more of (repeatable)."),
    ] = None,
    index: IndexOpt = None,
    k: KOpt = None,
    all_: AllOpt = False,
    type_: TypeOpt = None,
    path: PathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Recommend files like the examples (and unlike those given with --not); each hit
    names the example it is nearest to. The examples themselves are never returned."""
    hits = with_engine(
        index,
        lambda engine: engine.recommend(
            [str(f) for f in files],
            [str(f) for f in not_ or []],
            k=k,
            types=types_list(type_),
            path_glob=path,
            cutoff=False if all_ else None,
        ),
    )
    show_hits(hits, json_out)


@app.command()
def tune(
    pairs: Annotated[
        Path | None, typer.Argument(help="CSV of query text, file path (not with --reset).")
    ] = None,
    index: IndexOpt = None,
    space: Annotated[
        str, typer.Option("--space", help="The space whose queries to adapt: text, clip, clap.")
    ] = "text",
    eval_share: Annotated[
        float,
        typer.Option(
            "--eval",
            help="Hold out this share of the files (seeded) and print recall@10 and MRR "
            "before and after; the stored adapter is the one trained on the rest.",
        ),
    ] = 0.0,
    outside: Annotated[
        Path | None,
        typer.Option(
            "--outside",
            help="With --eval: a CSV of other (query, file) pairs, not trained on, to show "
            "regressions (default: files asked by their names).",
        ),
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Remove the space's adapter: back to the base model.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Adapt text queries to your domain from (query, file) pairs: a small linear map on the
    query side, trained in seconds; the model and the index's vectors stay as they are."""
    from searchengine import tune as tuning

    if reset:
        if pairs is not None:
            fail("--reset takes no PAIRS file")
        removed = with_engine(index, lambda e: tuning.reset(e, space), readonly=False)
        if json_out:
            print_json({"space": space, "removed": removed})
        else:
            out().print(
                f"{space}: adapter removed" if removed else f"{space}: no adapter to remove",
                markup=False,
            )
        return
    if pairs is None:
        fail("give a CSV of (query text, file path) pairs, or --reset")
    report = with_engine(
        index,
        lambda e: tuning.tune(e, str(pairs), space, eval_share, outside),
        readonly=False,
    )
    if json_out:
        print_json(report.to_json())
        return
    show = out()
    show.print(
        f"{space}: adapter trained on {report.train_pairs} pairs in {report.seconds:.1f} s "
        f"(loss {report.loss_before:.3f} -> {report.loss_after:.3f}) and stored",
        markup=False,
    )
    for line in report.skipped[:10]:
        show.print(f"  skipped {line}", markup=False, style="dim")
    if len(report.skipped) > 10:
        show.print(f"  ... and {len(report.skipped) - 10} more skipped", markup=False, style="dim")
    if report.scores:
        show.print(
            "                         queries  recall@10 before -> after  MRR before -> after",
            markup=False,
        )
    for sc in report.scores:
        show.print(
            f"  {sc.name:<22} {sc.queries:>7}  {sc.recall_before:.3f} -> {sc.recall_after:.3f}"
            f"             {sc.mrr_before:.3f} -> {sc.mrr_after:.3f}",
            markup=False,
        )
    for note in report.notes:
        show.print(f"  note: {note}", markup=False, style="dim")


@app.command()
def duplicates(
    index: IndexOpt = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Cosine similarity for near duplicates, 0-1.")
    ] = 0.95,
    exact_only: Annotated[
        bool, typer.Option("--exact-only", help="Only identical files, no vector search.")
    ] = False,
    type_: TypeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Groups of exact copies (same content) and near duplicates (alike in a space)."""
    from searchengine.duplicates import find_duplicates, render_text

    groups = with_engine(
        index,
        lambda engine: find_duplicates(
            engine, near=not exact_only, threshold=threshold, types=types_list(type_)
        ),
    )
    if json_out:
        print_json([g.to_json() for g in groups])
    else:
        out().print(render_text(groups), markup=False)


@app.command("map")
def map_(
    output: Annotated[
        list[Path],
        typer.Option(
            "-o", "--output", help="map.html (interactive, offline) or map.png; repeat for both."
        ),
    ],
    index: IndexOpt = None,
    space: Annotated[
        str | None, typer.Option("--space", help="clip, clap or text (default: the fullest).")
    ] = None,
    type_: TypeOpt = None,
    path: PathOpt = None,
    refit: Annotated[
        bool, typer.Option("--refit", help="Lay the whole space out again.")
    ] = False,
    sample: Annotated[
        int | None, typer.Option("--sample", help="Fit on this many files (default 10000).")
    ] = None,
    thumbs: Annotated[
        int, typer.Option("--thumbs", min=0, help="Pictures embedded in the HTML at most.")
    ] = 1000,
    json_out: JsonOpt = False,
) -> None:
    """Draw the collection as a map: one point per file, clustered and labelled."""
    from searchengine.atlas.render import check_output, write

    for target in output:
        try:
            check_output(target)
        except UserError as exc:
            fail(str(exc))

    def run(engine: Any) -> Any:
        result = engine.map(
            space, types=types_list(type_), path_glob=path, refit=refit, sample=sample
        )
        for target in output:
            write(result, target, thumbs=thumbs)
        return result

    result = with_engine(index, run, readonly=False)
    if json_out:
        print_json(result.to_json())
    else:
        out().print(result.summary(), markup=False)
        for target in output:
            out().print(f"wrote {target}", markup=False)


@app.command()
def thumb(
    file: Annotated[Path, typer.Argument(help="A video or an image.")],
    at: Annotated[float, typer.Option("--at", help="Seconds into the video.")] = 0.0,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write it.")] = Path(
        "thumb.jpg"
    ),
    size: Annotated[
        int | None, typer.Option("--size", help="Longest side in pixels (default: full).")
    ] = None,
) -> None:
    """Write the frame of a video at a moment (or an image, upright) to a file."""
    from searchengine.thumbs import thumbnail

    try:
        written = thumbnail(file, output, at=at, max_side=size)
    except UserError as exc:
        fail(str(exc))
    out().print(f"wrote {written}")


@app.command()
def models(index: IndexOpt = None, json_out: JsonOpt = False) -> None:
    """Each space's configured model and whether its weights can be found here."""
    from searchengine.config import IndexConfig, default_index_dir
    from searchengine.encoders.registry import ModelRegistry

    rows = ModelRegistry(IndexConfig.load(index or default_index_dir())).report()
    if json_out:
        print_json(rows)
        return
    for row in rows:
        mark = "[green]ok[/green]" if row["available"] else "[yellow]missing[/yellow]"
        out().print(f"{row['space']:<5} {row['model']}  {mark}")
        out().print(f"      {row['weights']}", markup=False)


@app.command()
def status(index: IndexOpt = None, json_out: JsonOpt = False) -> None:
    """What the index holds: files per type and state, models, failures."""
    from rich.table import Table

    info = with_engine(index, lambda engine: engine.status())
    if json_out:
        print_json(info)
        return
    out().print(f"index: {info['index']}  ({info['files']} files)")
    table = Table("type", "indexed", "pending", "failed", "skipped")
    for ftype, counts in sorted(info["types"].items()):
        table.add_row(
            ftype, *(str(counts.get(s, 0)) for s in ("indexed", "pending", "failed", "skipped"))
        )
    out().print(table)
    for space, sp in info["spaces"].items():
        if space == "ocr":  # an engine, not vectors: say which and why (media/ocr.py)
            out().print(f"ocr   {sp['weights']}", markup=False)
            continue
        mark = "ok" if sp["available"] else "missing"
        kind = f" ({sp['vector_index']})" if sp.get("vector_index") else ""
        out().print(
            f"{space:<5} {sp['model']}  vectors={sp['vectors']}{kind}  weights {mark}",
            markup=False,
        )
        if not sp["available"]:
            out().print(f"      {sp['weights']}", markup=False)
        if "adapter" in sp:
            ad = sp["adapter"]
            state = "in use" if ad["in_use"] else f"not used: {ad['why_not']}"
            out().print(f"      query adapter ({ad['pairs']} pairs): {state}", markup=False)
    for key in ("failed", "skipped", "pending"):
        _print_groups(key, [(item["path"], item["reason"] or "") for item in info[key]])
    away: dict[tuple[str, str], int] = {}
    for item in info.get("unreachable", []):
        away[(item["at"], item["reason"])] = away.get((item["at"], item["reason"]), 0) + 1
    for (at, why), n in away.items():
        out().print(f"unreachable: {at}: {why} ({n} files kept)", markup=False)


speakers_app = typer.Typer(
    help="Who speaks in your recordings: list the speakers, name one.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(speakers_app, name="speakers")


@speakers_app.callback()
def speakers(ctx: typer.Context, index: IndexOpt = None, json_out: JsonOpt = False) -> None:
    """List the speakers (voices clustered across all recordings), most speaking time first,
    with their files and a sample moment. `speakers name ID NAME` names one."""
    if ctx.invoked_subcommand is not None:
        return
    found = with_engine(index, lambda engine: engine.speakers())
    if json_out:
        print_json([s.to_json() for s in found])
        return
    if not found:
        out().print("no speakers yet (index recordings with speech; voices must not be off)")
        return
    for s in found:
        files = f"{len(s.files)} file{'s' if len(s.files) != 1 else ''}"
        more = f", clusters {', '.join(map(str, s.clusters))}" if len(s.clusters) > 1 else ""
        out().print(
            f"[bold]{s.id:>3}[/bold] {s.label}  [dim]{s.seconds:.1f} s in {files}{more}[/dim]"
        )
        if s.sample is not None:
            path, start, end = s.sample
            out().print(f"     e.g. {path} [{start:g}s-{end:g}s]", markup=False)


@speakers_app.command("name")
def speakers_name(
    speaker: Annotated[str, typer.Argument(help="The speaker's id (or current name).")],
    name: Annotated[
        str | None, typer.Argument(help="The name to give (a name already given joins it).")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the speaker's name.")] = False,
    index: IndexOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Name a speaker; the name stays with the voice through re-indexing and new files.
    A name another speaker already has joins this one to it (one person, several clusters)."""
    if clear and name is not None:
        fail("give a name or --clear, not both")
    if not clear and name is None:
        fail("give the name (or --clear to remove the speaker's name)")
    ref = speaker
    found = with_engine(
        index,
        lambda engine: (
            engine.clear_speaker_name(ref) if clear else engine.name_speaker(ref, name or "")
        ),
        readonly=False,
    )
    if json_out:
        print_json(found.to_json() if found is not None else None)
    elif found is None:
        out().print(f"speaker {speaker}: done (it has no speech now)", markup=False)
    elif found.joined:
        files = f"{len(found.files)} file{'s' if len(found.files) != 1 else ''}"
        out().print(
            f"speaker {speaker} joined to {found.label}: now {len(found.clusters)} clusters, "
            f"{files}",
            markup=False,
        )
    elif clear:
        out().print(f"speaker {speaker} has no name now ({found.label})", markup=False)
    else:
        out().print(f"speaker {found.id} is now {found.label}", markup=False)


@app.command()
def remove(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to forget.")],
    index: IndexOpt = None,
) -> None:
    """Remove files or folders from the index (the files on disk are not touched)."""
    count = with_engine(
        index, lambda engine: engine.remove([str(p) for p in paths]), readonly=False
    )
    out().print(f"removed {count} files from the index")


@app.command()
def watch(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to keep indexed.")],
    index: IndexOpt = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between rescans when polling.")
    ] = 60.0,
    debounce: Annotated[
        float, typer.Option("--debounce", help="Quiet seconds before a batch is indexed.")
    ] = 1.0,
    poll: Annotated[bool, typer.Option("--poll", help="Rescan periodically, no inotify.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per batch.")] = False,
) -> None:
    """Keep the index current as files appear, change, move and disappear (Ctrl-C stops)."""
    from searchengine.watch import run_watch

    engine = open_engine(index, create=True)
    try:
        run_watch(
            engine,
            [str(p) for p in paths],
            say=lambda line: print(line, flush=True),
            tell=lambda line: err().print(line, markup=False, emoji=False),
            json_out=json_out,
            interval_s=interval,
            debounce_s=debounce,
            poll=poll,
        )
    except UserError as exc:
        fail(str(exc))
    finally:
        engine.close()


@app.command()
def serve(
    index: IndexOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (beyond loopback: a token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free one).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SEARCHENGINE_TOKEN",
            help="Every request must carry it (default: none on loopback, else one is made "
            "and printed once).",
        ),
    ] = None,
    cors: Annotated[
        list[str] | None,
        typer.Option("--cors", help="An origin whose pages may call the API (repeatable)."),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest example file accepted.")
    ] = 64.0,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            help="Queries answered at once (each holds its own copy of the vector caches).",
        ),
    ] = 1,
) -> None:
    """Serve a web page and a JSON API over the index (read-only; Ctrl-C stops)."""
    from searchengine.serve.server import run_server

    if not 0 <= port <= 65535:
        fail(f"--port must be 0 to 65535 (0: any free one), not {port}")
    if not (0 < max_upload_mb < float(1 << 20)):  # also refuses nan and inf
        fail(f"--max-upload-mb must be a number above 0 (in MiB), not {max_upload_mb:g}")
    try:
        run_server(
            index,
            host,
            port,
            token=token,
            cors=cors or [],
            max_upload=int(max_upload_mb * (1 << 20)),
            parallel=parallel,
            say=lambda line: out().print(line, markup=False, highlight=False),
        )
    except UserError as exc:
        fail(str(exc))
