"""The engine: open or create an index, and index(), search(), status(), remove() on it."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.exc import OperationalError

from searchengine.adapters import Adapter, adapted
from searchengine.adapters import load as load_adapters
from searchengine.config import IndexConfig, default_index_dir
from searchengine.crawler import display_path
from searchengine.encoders.registry import SPACES, ModelRegistry
from searchengine.errors import DecodeError, ModelUnavailable, Skip, UserError
from searchengine.indexer import Indexer, IndexSummary, ProgressFn
from searchengine.media import decode_file
from searchengine.search import RankParams
from searchengine.store.catalog import Catalog, OutdatedFormat
from searchengine.store.schema import SCHEMA_VERSION
from searchengine.store.store import Store, VectorCache
from searchengine.types import FILE_TYPES, Filters, Hit, Hits
from searchengine.understand import Reading, Wanted
from searchengine.voices import VoiceMethods

if TYPE_CHECKING:
    from searchengine.atlas import MapResult
    from searchengine.search import Ranker

QUERY_MODELS = "query-models"
"""Folder of the index holding the light (ONNX) query encoders exported from its models."""


def _absolute(name: str) -> str:
    """A model given as a local path is stored absolute, so the index works from any folder."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _with_models(
    config: IndexConfig, models: dict[str, str], clip_pretrained: str | None
) -> tuple[IndexConfig, list[str]]:
    """The config with the requested models, and which spaces they change."""
    wanted = IndexConfig.load_dict(config.to_dict())
    changed: list[str] = []
    for space, name in models.items():
        if name and wanted.models.get(space) != _absolute(name):
            wanted.models[space] = _absolute(name)
            changed.append(space)
    if clip_pretrained and _absolute(clip_pretrained) != wanted.clip_pretrained:
        wanted.clip_pretrained = _absolute(clip_pretrained)
        if "clip" not in changed:
            changed.append("clip")
    return wanted, changed


def _check_models(config: IndexConfig, spaces: list[str]) -> None:
    """Each newly chosen model must be found and load before the index switches to it (a
    checkpoint that exists but is damaged is refused too). Loaded models are kept for the
    run that follows."""
    registry = ModelRegistry(config)
    for space in spaces:
        if space in ("speech", "voice") and config.models.get(space) == "off":
            continue
        if space == "ocr":  # not a model of the registry: the engines bring their own
            _check_ocr(config.models["ocr"])
            continue
        try:
            registry.resolve(space)
            registry.encoder(space)
        except ModelUnavailable as exc:
            raise UserError(f"{exc} Nothing was changed.") from None
        except Exception as exc:  # an unknown open_clip name, a malformed config file
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UserError(
                f"{space} model '{config.models.get(space)}' cannot be used: {first}. "
                "Nothing was changed."
            ) from None


def _check_ocr(engine: str) -> None:
    """An OCR engine is accepted only where it can run (else the index would read nothing)."""
    from searchengine.media import ocr

    if engine != "off" and engine not in ocr.ENGINES:
        raise UserError(
            f"--ocr wants {', '.join(map(repr, ocr.ENGINES))} or 'off', not {engine!r}. "
            "Nothing was changed."
        )
    if engine != "off" and not ocr.available(engine):
        hint = {
            "tesseract": "install Debian's tesseract-ocr (its eng data) and tesserocr",
            "rapidocr": "pip install rapidocr-onnxruntime",
        }[engine]
        raise UserError(
            f"OCR engine {engine!r} is not installed here ({hint}). Nothing was changed."
        )


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _format_message(found: int) -> str:
    if found > SCHEMA_VERSION:
        return (
            f"this index was written by a newer searchengine (format {found}; this version "
            f"reads up to {SCHEMA_VERSION}): upgrade searchengine to use it"
        )
    return (
        f"this index is in an older format ({found}) and this folder is read-only: run "
        "'searchengine index' once where it is writable to upgrade it"
    )


__all__ = ["Engine", "IndexSummary", "check_types"]


DEFAULT_K = 10
"""Hits on a page when no k is given (its tail then cut by the adaptive cutoff)."""


def _page(k: int | None, cutoff: bool | None) -> tuple[int, bool]:
    """How many hits, and whether the tail is cut: no `k` means a default page, cut at
    the score gap; an explicit `k` means exactly that many unless `cutoff` says so."""
    cut = k is None if cutoff is None else cutoff
    k = DEFAULT_K if k is None else k
    if k <= 0:
        raise UserError("-k must be at least 1")
    return k, cut


class Engine(VoiceMethods):
    """An index folder: catalog.db (truth), FAISS caches per space and level, config.json.

    `readonly=True` is how queries open an index: nothing is written (it works on a
    read-only disk and beside a running `index`), and a long-lived engine sees what another
    process commits, before each query, without reopening."""

    def __init__(
        self,
        index_dir: str | os.PathLike[str] | None = None,
        *,
        create: bool = False,
        models: dict[str, str] | None = None,
        clip_pretrained: str | None = None,
        readonly: bool = False,
        params: RankParams | None = None,
    ) -> None:
        self.dir = Path(index_dir).expanduser() if index_dir else default_index_dir()
        self.readonly = readonly
        db = self.dir / "catalog.db"
        if not db.exists() and (readonly or not create):
            raise UserError(f"no index at {self.dir} yet: run 'searchengine index PATH' first")
        self.config = IndexConfig.load(self.dir)
        wanted, changed = _with_models(self.config, models or {}, clip_pretrained)
        if changed and readonly:
            raise UserError("models are chosen by 'searchengine index', not by a query")
        if changed:
            _check_models(wanted, changed)  # before anything is written: a typo changes nothing
            self.config = wanted
        if not readonly:
            self.dir.mkdir(parents=True, exist_ok=True)
            if changed:  # under the writer lock: a refused run changes nothing
                with self._write_lock():
                    self.config.save(self.dir)
            elif not (self.dir / "config.json").exists():
                self.config.save(self.dir)
        self.store = self._open_store()
        self.models = ModelRegistry(self.config, query_cache=self.dir / QUERY_MODELS)
        self._config_seen = _signature(self.dir / "config.json")
        self.params = params or RankParams()
        self.adapters_override: dict[str, Adapter] | None = None
        """Query adapters to use instead of the stored ones (tune's before/after figures)."""
        self._adapter_matrices: dict[str, Any] = {}

    def _open_store(self) -> Store:
        """Open the catalog; an index of an older format is migrated first (under the
        writer lock), a newer one is refused with a clear line."""
        try:
            store = Store(self.dir, readonly=self.readonly)
        except OutdatedFormat as exc:
            if exc.found > SCHEMA_VERSION or not os.access(self.dir, os.W_OK):
                raise UserError(_format_message(exc.found)) from None
            with self._write_lock():
                self._drop_old_caches(Store(self.dir, readonly=False)).close()
            store = Store(self.dir, readonly=True)
        except ValueError as exc:  # written by a newer version
            raise UserError(str(exc)) from None
        except OperationalError as exc:  # a read-only disk or folder, for a writer
            if self.readonly:
                raise
            why = str(exc.orig) if exc.orig is not None else str(exc)
            raise UserError(
                f"cannot write to {self.dir} ({why}): searches work there, indexing needs "
                "a writable folder"
            ) from None
        return self._drop_old_caches(store)

    def _drop_old_caches(self, store: Store) -> Store:
        if store.catalog.migrated_from == 1:  # format 1's FAISS files are of no use now
            for space in SPACES:
                (self.dir / f"{space}.faiss").unlink(missing_ok=True)
        return store

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog

    # ---- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def writer(self) -> Iterator[None]:
        """One writer per index; readers never wait (SQLite WAL, atomic FAISS files)."""
        if self.readonly:
            raise UserError(f"{self.dir} was opened read-only")
        with self._write_lock():
            yield

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        try:
            fh = open(self.dir / "lock", "w")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UserError(f"cannot write to {self.dir}: {exc.strerror or exc}") from None
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"another searchengine process is writing to {self.dir}: wait for it "
                    "to finish (searches work meanwhile)"
                ) from None
            yield

    def vectors(self, space: str, level: str = "segment") -> VectorCache:
        """A space's FAISS cache, caught up with the catalog."""
        return self.store.cache(space, level)

    def sync_vectors(self) -> None:
        self.store.sync(SPACES)

    def _follow_config(self) -> None:
        """A reader kept open (a server) follows a model switch that another process's
        `index` saved, as it follows that process's vectors: checked by one stat per query."""
        if not self.readonly:
            return  # a writer's config is its own
        seen = _signature(self.dir / "config.json")
        if seen == self._config_seen:
            return
        self._config_seen = seen
        fresh = IndexConfig.load(self.dir)
        if fresh != self.config:
            self.config = fresh
            self.models = ModelRegistry(fresh, query_cache=self.dir / QUERY_MODELS)

    def ranker(self) -> Ranker:
        from searchengine.search import Ranker

        self._follow_config()

        models = {s: self.config.model_key(s) for s in SPACES}
        return Ranker(
            self.store,
            adapted(self.models.query_encoder, self.query_adapters()),
            models,
            self.params,
        )

    def query_adapters(self) -> dict[str, Adapter]:
        """The query adapters (`searchengine tune`) that apply to this index's models now."""
        if self.adapters_override is not None:
            return self.adapters_override
        models = {s: self.config.model_key(s) for s in SPACES}
        return load_adapters(self.dir, self.catalog, models, self._adapter_matrices)

    # ---- indexing ----------------------------------------------------------------------

    def index(
        self,
        paths: Iterable[str | os.PathLike[str]],
        progress: ProgressFn | None = None,
        *,
        prune: bool = False,
        cluster: str | None = None,
        cluster_workers: int | None = None,
    ) -> IndexSummary:
        """Bring the index up to date with `paths`: embed new and changed files, follow moves,
        forget deleted files. Bad files are recorded with a reason; the run goes on. What
        cannot be read is kept; `prune` forgets what lies under roots that are gone.
        `cluster` ('auto', 'ray://HOST:PORT'): decode and embed on that Ray cluster with
        `cluster_workers` workers (default: one per CPU); this process still writes."""
        from searchengine.store.store import vector_memory

        vector_memory()  # a bad SEARCHENGINE_VECTOR_MEMORY stops the run before any work
        with self.writer():
            if cluster:
                from searchengine.cluster import ClusterIndexer

                indexer: Indexer = ClusterIndexer(
                    self.store,
                    self.models,
                    self.config,
                    self.dir,
                    address=cluster,
                    workers=cluster_workers,
                )
            else:
                indexer = Indexer(self.store, self.models, self.config, self.dir)
            return indexer.run(paths, progress, prune=prune)

    # ---- queries -----------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int | None = None,
        types: Sequence[str] | None = None,
        path: str | None = None,
        *,
        after: DateLike = None,
        before: DateLike = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        min_score: float = 0.0,
        like: str | os.PathLike[str] | None = None,
        negative: str | None = None,
        diverse: bool = True,
        cutoff: bool | None = None,
        place: str | None = None,
        literal: bool = False,
        sort: str = "relevance",
        include_self: bool = False,
        now: datetime | None = None,
        speaker: str | int | None = None,
    ) -> Hits:
        """Files best matching a text query across every space, best moments first.

        `like` adds an example file's vectors to the query, `negative` subtracts a phrase
        ("beach" with negative "people"); filters apply inside retrieval, so k hits come back
        whenever k exist. Without `k`, a page of DEFAULT_K whose tail is cut where scores
        fall away (the adaptive cutoff; `.cut` says how many went); `cutoff` overrides:
        True cuts a page of k too, False keeps the whole page.

        Dates, kinds, lengths and places in the words become filters unless `literal`
        (searchengine.understand; `now` fixes "yesterday"); given arguments win over them,
        and `.reading` tells how the query was read. `place` keeps files taken there (GPS).
        `speaker` (a name or id, see `speakers()`) keeps files where that speaker talks; a
        named speaker in the words does the same, and a query that is only a name finds
        where that speaker talks.
        `sort` orders the page found: relevance, date (oldest first) or -date. The `like`
        example and its exact copies are left out unless `include_self`."""
        from searchengine.search import Query

        query = (query or "").strip()
        if not query and like is None:
            raise UserError("the query is empty")
        check_sort(sort)
        k, cut = _page(k, cutoff)
        speaker_id = self.speaker_id(speaker) if speaker not in (None, "") else None
        said = query
        if speaker_id is None and query and not literal:
            named = self.speaker_in_query(query)
            if named is not None and not named[1] and like is None:
                return self._finish(self.speaker_hits(named[0], k), sort)
            if named is not None:
                speaker_id, query = named
        given = Wanted(
            types=list(types) if types else None,
            path=path or None,
            after=after if after != "" else None,
            before=before if before != "" else None,
            min_duration=min_duration,
            max_duration=max_duration,
            place=place or None,
        )
        reading = self.read(query, now=now, literal=literal).with_flags(given)
        if speaker in (None, "") and speaker_id is not None:  # the name was in the words
            reading.query = said
            reading.notes.append(
                f"only where {self.speaker_label(speaker_id)} speaks (a speaker's name; "
                "--literal searches the words)"
            )
        filters = self._filters(reading)
        filters.speaker = speaker_id
        if like is not None and not include_self:
            filters.exclude = self._self_and_copies(like)
        example = self._example_vectors(like) if like is not None else None
        hits = self.ranker().run_query(
            Query(
                text=reading.text,
                k=k,
                filters=filters,
                min_score=min_score,
                like=example,
                negative=(negative or "").strip() or None,
                diverse=diverse,
                cutoff=cut,
            ),
        )
        page = self._finish(hits, sort, reading)
        if speaker_id is not None:
            self.speaker_moments_first(page, speaker_id)
        return page

    def read(self, query: str, *, now: datetime | None = None, literal: bool = False) -> Reading:
        """How `search` reads a query: the words it embeds and the filters it recognises
        (places are those of this index's files)."""
        from searchengine import understand

        query = (query or "").strip()
        if literal or not query:
            return understand.literal(query)
        return understand.read_query(query, now, self.catalog.known_places)

    def _filters(self, reading: Reading) -> Filters:
        """The store's filters for a reading; a place no indexed file was taken in is
        said in a note (it matches nothing)."""
        from searchengine.understand import fold

        w = reading.filters
        filters = make_filters(w.types, w.path, w.after, w.before, w.min_duration, w.max_duration)
        if w.place:
            filters.place = fold(w.place)
            if not filters.place or not self.catalog.known_places([filters.place]):
                reading.notes.append(f"no indexed photo or video was taken in '{w.place}'")
        return filters

    def _self_and_copies(self, path: str | os.PathLike[str]) -> tuple[int, ...] | None:
        """Ids of an example file and of its exact copies in the index (same content)."""
        from searchengine.crawler import file_hash

        target = os.path.abspath(os.fspath(path))
        key = os.fsencode(target)
        record = self.catalog.file_by_key(key)
        try:
            st = os.stat(target)
            fresh = record is not None and (record.size, record.mtime_ns) == (
                st.st_size,
                st.st_mtime_ns,
            )
            sha = record.sha if fresh and record is not None else file_hash(target)
        except OSError:
            sha = None
        return tuple(sorted(self.catalog.same_content(key, sha))) or None

    def _finish(self, hits: list[Hit], sort: str, reading: Reading | None = None) -> Hits:
        """The page with each file's date, in the order asked for (a stable sort: files of
        one date keep their relevance order)."""
        page = hits if isinstance(hits, Hits) else Hits(hits)
        dates = self.catalog.file_dates(h.file_id for h in page)
        for hit in page:
            hit.date = dates.get(hit.file_id)
        if sort != "relevance":
            sign = -1.0 if sort == "-date" else 1.0
            page.sort(key=lambda h: (h.date is None, sign * (h.date or 0.0)))
        page.reading = reading
        self.annotate_speakers(page)
        return page

    def similar(
        self,
        path: str | os.PathLike[str],
        k: int | None = None,
        types: Sequence[str] | None = None,
        path_glob: str | None = None,
        *,
        after: DateLike = None,
        before: DateLike = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        cutoff: bool | None = None,
        include_self: bool = False,
    ) -> Hits:
        """Files like the given one (indexed or not), in the spaces that file lives in,
        without it and its exact copies unless `include_self`. `k` and `cutoff` work as for
        `search`."""
        k, cut = _page(k, cutoff)
        filters = make_filters(types, path_glob, after, before, min_duration, max_duration)
        example = self._example_vectors(path)
        if not include_self:
            filters.exclude = self._self_and_copies(path)
        hits = self.ranker().run_similar(example, k, filters, cutoff=cut)
        return self._finish(hits, "relevance")

    def recommend(
        self,
        liked: Sequence[str | os.PathLike[str]],
        disliked: Sequence[str | os.PathLike[str]] = (),
        k: int | None = None,
        types: Sequence[str] | None = None,
        path_glob: str | None = None,
        *,
        after: DateLike = None,
        before: DateLike = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        cutoff: bool | None = None,
    ) -> Hits:
        """Files like the liked examples and unlike the disliked ones (Rocchio per space,
        searchengine/recommend.py), ranked and filtered as `similar` does. The examples and
        their exact copies are never returned; each hit names the liked example it is
        nearest to (`nearest_example`). Examples not in the index are embedded now."""
        from searchengine.recommend import nearest, rocchio

        liked_paths = [os.path.abspath(os.fspath(p)) for p in liked]
        disliked_paths = [os.path.abspath(os.fspath(p)) for p in disliked or ()]
        if not liked_paths:
            raise UserError("give at least one example file to recommend from")
        both = set(liked_paths) & set(disliked_paths)
        if both:
            shown = display_path(sorted(both)[0])
            raise UserError(f"{shown} is given both as an example and with --not")
        k, cut = _page(k, cutoff)
        filters = make_filters(types, path_glob, after, before, min_duration, max_duration)
        pos = [self._example_vectors(p) for p in liked_paths]
        neg = [self._example_vectors(p) for p in disliked_paths]
        query = rocchio(pos, neg)
        if not query:
            raise UserError(
                "the examples leave no direction to search in (liked and disliked cancel out)"
            )
        exclude: set[int] = set()
        for p in liked_paths + disliked_paths:
            exclude.update(self._self_and_copies(p) or ())
        filters.exclude = tuple(sorted(exclude)) or None
        hits = self.ranker().run_similar(query, k, filters, cutoff=cut)
        for hit in hits:
            space = hit.reason.split(" ", 1)[0]
            which = nearest(self.catalog.mean_vectors(hit.file_id), pos, space)
            if which is not None:
                hit.nearest_example = display_path(liked_paths[which])
                hit.reason += f", nearest to {Path(liked_paths[which]).name}"
        return self._finish(hits, "relevance")

    def _example_vectors(self, path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
        """Per space, the mean vector of a file: stored if indexed, else embedded now."""
        target = os.path.abspath(os.fspath(path))
        if not os.path.isfile(target):
            what = "a folder, not a file" if os.path.isdir(target) else "no such file"
            raise UserError(f"{what}: {display_path(target)}")
        record = self.catalog.file_by_key(os.fsencode(target))
        example: dict[str, np.ndarray] = {}
        st = os.stat(target)
        if (
            record is not None
            and record.state == "indexed"
            and (record.size, record.mtime_ns) == (st.st_size, st.st_mtime_ns)
        ):  # an edited file is embedded as it is now, not as it was indexed
            example = self.catalog.mean_vectors(record.id)
            example.pop("voice", None)  # who speaks is `similar --voice`, not likeness
        return example or self._embed_example(target)

    def calibration(self) -> dict[str, tuple[float, float]]:
        """Fitted cosine ranges per space for this index (see calibration.py)."""
        return self.store.calibration({s: self.config.model_key(s) for s in SPACES})

    def thumbnail(
        self, path: str | os.PathLike[str], out: str | os.PathLike[str], at: float = 0.0
    ) -> Path:
        """The frame of a hit at a moment, written to `out` (see searchengine.thumbs)."""
        from searchengine.thumbs import thumbnail

        return thumbnail(path, out, at)

    def _embed_example(self, path: str) -> dict[str, np.ndarray]:
        """Decode and embed a file that is not (fully) in the index, to use as a query."""
        try:
            decoded = decode_file(path, self.config)
        except (Skip, DecodeError, OSError) as exc:
            raise UserError(f"cannot use {display_path(path)} as an example: {exc}") from None
        by_space: dict[str, list[Any]] = {}
        for seg in decoded.segments:
            by_space.setdefault(seg.space, []).append(seg.payload)
        out: dict[str, np.ndarray] = {}
        for space, payloads in by_space.items():
            try:
                rows = self.models.encoder(space).embed_items(payloads)
            except ModelUnavailable as exc:
                raise UserError(str(exc)) from None
            mean = rows.mean(axis=0)
            out[space] = mean / (np.linalg.norm(mean) or 1.0)
        return out

    # ---- maintenance -------------------------------------------------------------------

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Forget files (or everything under folders) without touching them on disk."""
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        if not roots:
            raise UserError("give at least one file or folder to remove")
        from searchengine.crawler import under

        with self.writer():
            gone = [r for r in self.catalog.all_files() if under(os.fsdecode(r.path_key), roots)]
            if not gone:
                raise UserError("none of the given paths is in the index")
            with self.catalog.transaction() as conn:
                self.catalog.delete_files(conn, [r.id for r in gone])
            self.sync_vectors()
        return len(gone)

    def map(
        self,
        space: str | None = None,
        *,
        types: Sequence[str] | None = None,
        path_glob: str | None = None,
        refit: bool = False,
        sample: int | None = None,
    ) -> MapResult:
        """The collection as a 2-D map of one space (default: the one `types` live in, else
        the fullest): one point per file, clustered, each cluster labelled by its words. A
        writer brings the stored layout up to date first (places new files, drops removed
        ones, refits when asked or when the model changed); a read-only engine shows it as
        stored. Render it with `searchengine.atlas.render.write`."""
        from searchengine.atlas import build

        filters = make_filters(types, path_glob, None, None, None, None)
        chosen = build.choose_space(self.catalog, space, filters.types)
        model = self.config.model_key(chosen)
        if self.readonly:
            return build.read_map(self.catalog, chosen, model, filters)
        if sample is not None and sample < 2:
            raise UserError("--sample must be at least 2")
        with self.writer():
            return build.build_map(
                self.catalog, self.dir, chosen, model, filters, refit=refit,
                sample=sample or build.FIT_SAMPLE,
            )

    def status(self) -> dict[str, Any]:
        """Counts per type and state, each space's model and vector count, and failures."""
        self._follow_config()
        records = self.catalog.all_files()
        by_type: dict[str, dict[str, int]] = {}
        for rec in records:
            counts = by_type.setdefault(
                rec.type, {"indexed": 0, "pending": 0, "failed": 0, "skipped": 0}
            )
            counts[rec.state] = counts.get(rec.state, 0) + 1
        stored = self.catalog.space_models()
        spaces: dict[str, Any] = {}
        from searchengine import adapters as query_adapters

        tuned = query_adapters.records(self.catalog)
        for row in self.models.report():
            space = str(row.pop("space"))
            spaces[space] = {**row, "vectors": stored.get(space, ("", 0))[1]}
            if space != "ocr":
                spaces[space]["vector_index"] = self.store.index_kind(space)
            if space in tuned:  # a query adapter from `searchengine tune`
                why = query_adapters.why_unused(
                    tuned[space], self.catalog, space, self.config.model_key(space)
                )
                spaces[space]["adapter"] = {
                    "pairs": tuned[space].get("pairs"),
                    "in_use": why is None,
                    "why_not": why,
                }
        problems = [
            {"path": r.path, "type": r.type, "state": r.state, "reason": r.reason}
            for r in records
            if r.state in ("failed", "skipped", "pending")
        ]
        by_id = {r.id: r for r in records}
        unreachable = [
            {"path": rec.path, "type": rec.type, "state": rec.state, "at": at, "reason": why}
            for fid, (at, why) in self.catalog.unreachable().items()
            if (rec := by_id.get(fid)) is not None
        ]
        return {
            "index": str(self.dir),
            "files": len(records),
            "types": by_type,
            "spaces": spaces,
            "failed": [p for p in problems if p["state"] == "failed"],
            "skipped": [p for p in problems if p["state"] == "skipped"],
            "pending": [p for p in problems if p["state"] == "pending"],
            "unreachable": sorted(unreachable, key=lambda u: u["path"]),
        }


DateLike = str | float | datetime | None


def to_timestamp(value: DateLike, name: str) -> float | None:
    """`2024-05-01`, `2024-05-01T10:30` (local time), a datetime or epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        raise UserError(f"{name} wants a date like 2024-05-31, not '{value}'") from None


def make_filters(
    types: Sequence[str] | None,
    path: str | None,
    after: DateLike,
    before: DateLike,
    min_duration: float | None,
    max_duration: float | None,
) -> Filters:
    from searchengine.search import glob_for

    for name, value in (("--min-duration", min_duration), ("--max-duration", max_duration)):
        if value is not None and value < 0:
            raise UserError(f"{name} must be zero or more seconds")
    return Filters(
        types=check_types(types),
        path_glob=glob_for(path),
        after=to_timestamp(after, "--after"),
        before=to_timestamp(before, "--before"),
        min_duration=min_duration,
        max_duration=max_duration,
    )


SORTS = ("relevance", "date", "-date")


def check_sort(sort: str) -> None:
    if sort not in SORTS:
        raise UserError(f"--sort wants one of {', '.join(SORTS)}, not '{sort}'")


def check_types(types: Sequence[str] | None) -> list[str] | None:
    if not types:
        return None
    out = []
    for t in types:
        t = t.strip().lower()
        if t not in FILE_TYPES:
            raise UserError(f"unknown type '{t}': choose from {', '.join(FILE_TYPES)}")
        out.append(t)
    return out
