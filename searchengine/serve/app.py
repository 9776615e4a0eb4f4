"""The HTTP API and the web page: presentation only, like cli.py. Every query goes to one
read-only Engine, so models load once and an `index` run elsewhere shows up at the next
query; the JSON of a hit is `search --json`'s, plus the file's id (media are served by id).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi import Path as ApiPath
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from searchengine.cli import types_list
from searchengine.engine import Engine
from searchengine.errors import UserError
from searchengine.serve.media import NotServable, Thumbnails, check_file
from searchengine.serve.security import BodyLimit, Guard, SameOrigin, SecurityHeaders
from searchengine.serve.uploads import DEFAULT_MAX_BYTES, BadUpload, Uploads
from searchengine.store.catalog import FileRecord, fts_terms
from searchengine.types import Hit

log = logging.getLogger("searchengine.serve")

STATIC = Path(__file__).with_name("static")
FORM_SLACK = 64 << 10
"""Room for a multipart envelope and form fields around an upload of the maximum size."""

T = TypeVar("T")

MAX_ID = 2**63 - 1
"""SQLite's largest integer: a bigger id is refused as invalid (422), not an overflow (500)."""

FileId = Annotated[int, ApiPath(ge=1, le=MAX_ID, description="A file's id in the index.")]


# ---- parameters: the CLI's options, by the same names ----------------------------------------


class FilterParams(BaseModel):
    """The filters `search` and `similar` share (`--type`, `--path`, dates, durations)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    k: int | None = Field(
        None, ge=1, le=1000, description="How many files (the whole page: no cutoff; default 10)."
    )
    all: bool = Field(False, description="Show the whole page, also hits below the cutoff.")
    type: str | None = Field(None, description="Only these types: image,audio,video,text.")
    path: str | None = Field(None, description="Only paths matching this glob.")
    after: str | None = Field(None, description="Only files dated on or after (YYYY-MM-DD).")
    before: str | None = Field(None, description="Only files dated before (YYYY-MM-DD).")
    min_duration: float | None = Field(None, ge=0, description="Audio/video of at least N s.")
    max_duration: float | None = Field(None, ge=0, description="Audio/video of at most N s.")
    include_self: bool = Field(False, description="Keep the example and its exact copies.")

    def engine_filters(self) -> dict[str, Any]:
        return {
            "cutoff": False if self.all else None,
            "include_self": self.include_self,
            "types": types_list(self.type),
            "after": self.after,
            "before": self.before,
            "min_duration": self.min_duration,
            "max_duration": self.max_duration,
        }


class SearchParams(FilterParams):
    """`searchengine search`'s options."""

    q: str = Field("", description="What you are looking for, in words.")
    min_score: float = Field(0.0, ge=0, le=1, description="Drop hits scoring below this.")
    like: int | None = Field(
        None, ge=1, le=MAX_ID, description="Id of an indexed file to add to the query."
    )
    not_: str | None = Field(None, alias="not", description="Words to steer away from.")
    diverse: bool = Field(True, description="Keep near duplicates apart.")
    place: str | None = Field(None, description="Only files taken at this place (GPS).")
    literal: bool = Field(False, description="Take the words as they are: no dates, kinds...")
    sort: str = Field("relevance", description="relevance, date (oldest first) or -date.")


class MapParams(BaseModel):
    """`searchengine map`'s choices: the space and the filters (the layout is the stored one)."""

    model_config = ConfigDict(extra="forbid")

    space: str | None = Field(None, description="clip, clap or text (default: the fullest).")
    type: str | None = Field(None, description="Only these types: image,audio,video,text.")
    path: str | None = Field(None, description="Only paths matching this glob.")


class DuplicateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threshold: float = Field(0.95, ge=0, le=1)
    exact_only: bool = False
    type: str | None = None


class ThumbParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    at: float = Field(0.0, ge=0, description="Seconds into a video.")
    size: int = Field(320, ge=16, le=2048, description="Longest side in pixels.")


# ---- the engine, shared ----------------------------------------------------------------------


class Library:
    """The server's read-only Engines: `parallel` of them answer at once, each used by one
    thread at a time (a Store catches up on another process's commits in place, which one
    thread must do alone). They share the loaded models (one copy per process) and each
    holds its own vector caches; a query waits for a free engine rather than fail."""

    def __init__(self, engines: list[Engine]) -> None:
        self.engines = engines
        self.engine = engines[0]
        self._free: queue.SimpleQueue[Engine] = queue.SimpleQueue()
        for engine in engines:
            self._free.put(engine)

    def call(self, fn: Callable[[Engine], T]) -> T:
        engine = self._free.get()
        try:
            return fn(engine)
        finally:
            self._free.put(engine)

    def close(self) -> None:
        for engine in self.engines:
            engine.close()

    def record(self, file_id: int) -> FileRecord:
        found = self.call(lambda e: e.catalog.files_by_id([file_id]))
        if file_id not in found:
            raise HTTPException(404, f"no file with id {file_id} in the index")
        return found[file_id]

    def warm(self) -> None:
        """Load the vector caches and query encoders, before the first query."""
        from searchengine.encoders.registry import SPACES
        from searchengine.errors import ModelUnavailable

        for engine in self.engines:
            for space in SPACES:
                if len(engine.vectors(space)) == 0:
                    continue
                try:
                    engine.models.query_encoder(space).embed_queries(["warm up"])
                except ModelUnavailable:
                    continue


def matched_words(query: str, texts: list[str]) -> list[str]:
    """Words of the shown texts that a query word matches (as `reason` counts them: the same
    word, or the same first five letters), for the page to highlight."""
    terms = fts_terms(query)
    stems = {t[:5] for t in terms}
    found: dict[str, None] = {}
    for text in texts:
        for word in re.findall(r"\w+", text):
            low = word.lower()
            if low in terms or (len(low) >= 5 and low[:5] in stems):
                found[word] = None
    return list(found)


def hit_json(hit: Hit, query: str = "") -> dict[str, Any]:
    out = hit.to_json()
    out["id"] = hit.file_id
    out["name"] = os.path.basename(hit.path)
    out["words"] = matched_words(query, [s.text for s in hit.segments if s.text]) if query else []
    return out


def hits_answer(hits: list[Hit], started: float, query: str = "") -> dict[str, Any]:
    """The page: the hits, how many the adaptive cutoff left out (`all=true` shows them),
    how the words were read when that changed anything (as `search` prints it), and the
    time the server took."""
    reading = getattr(hits, "reading", None)
    told = None
    if reading is not None and reading.changed():
        told = {**reading.to_json(), "described": reading.describe()}
    return {
        "hits": [hit_json(h, query) for h in hits],
        "cut": getattr(hits, "cut", 0),
        "reading": told,
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
    }


# ---- the app -----------------------------------------------------------------------------------


def create_app(
    index: str | os.PathLike[str] | None = None,
    *,
    engine: Engine | None = None,
    token: str | None = None,
    cors: list[str] | None = None,
    max_upload: int = DEFAULT_MAX_BYTES,
    upload_dir: str | os.PathLike[str] | None = None,
    parallel: int = 1,
) -> FastAPI:
    """The server for one index, opened read-only here (or the given read-only engine).
    `token`: what every request must carry (None: loopback Host only); `cors`: origins
    allowed to call the API from their pages (none by default); `parallel`: queries
    answered at once (each with its own read-only Engine)."""
    if parallel < 1:
        raise UserError("--parallel must be at least 1")
    if engine is None:
        engine = Engine(index, readonly=True)
    elif not engine.readonly:
        raise ValueError("the server takes an engine opened with readonly=True")
    more = [Engine(engine.dir, readonly=True) for _ in range(parallel - 1)]
    library = Library([engine, *more])
    uploads = Uploads(upload_dir)
    thumbs = Thumbnails()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        uploads.close()
        library.close()

    app = FastAPI(
        title="searchengine",
        summary="Search your own documents, photos, recordings and videos by meaning.",
        version="0.1.0",
        docs_url=None,  # the bundled API explorer loads its script from a CDN; the page is offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.library = library
    app.state.uploads = uploads
    _errors(app)

    def run_search(p: SearchParams, like: str | None) -> list[Hit]:
        return library.call(
            lambda e: e.search(
                p.q,
                k=p.k,
                path=p.path,
                min_score=p.min_score,
                like=like,
                negative=p.not_,
                diverse=p.diverse,
                place=p.place,
                literal=p.literal,
                sort=p.sort,
                **p.engine_filters(),
            )
        )

    def run_similar(path: str, p: FilterParams) -> list[Hit]:
        filters = p.engine_filters()
        filters["path_glob"] = p.path
        return library.call(lambda e: e.similar(path, k=p.k, **filters))

    def example(file: UploadFile, call: Callable[[str], list[Hit]]) -> list[Hit]:
        with uploads.saved(file.file, file.filename, max_upload) as path:
            try:
                return call(path)
            except UserError as exc:  # name the upload as its sender knows it
                raise UserError(str(exc).replace(path, file.filename or "the upload")) from None

    @app.get("/api/search", tags=["search"])
    def search(p: Annotated[SearchParams, Query()]) -> dict[str, Any]:
        """Files matching words (and an indexed example, `like`), best first."""
        started = time.perf_counter()
        like = None
        if p.like is not None:
            like = os.fsdecode(library.record(p.like).path_key)
        return hits_answer(run_search(p, like), started, p.q)

    @app.post("/api/search", tags=["search"])
    def search_by_upload(
        p: Annotated[SearchParams, Query()], file: Annotated[UploadFile, File()]
    ) -> dict[str, Any]:
        """Like GET /api/search with an uploaded example file in place of `like`."""
        started = time.perf_counter()
        if p.like is not None:
            raise HTTPException(400, "give either like=ID or an uploaded file, not both")
        return hits_answer(example(file, lambda path: run_search(p, path)), started, p.q)

    @app.get("/api/similar/{file_id}", tags=["search"])
    def similar(file_id: FileId, p: Annotated[FilterParams, Query()]) -> dict[str, Any]:
        """Files like an indexed file."""
        started = time.perf_counter()
        path = os.fsdecode(library.record(file_id).path_key)
        return hits_answer(run_similar(path, p), started)

    @app.post("/api/similar", tags=["search"])
    def similar_to_upload(
        p: Annotated[FilterParams, Query()], file: Annotated[UploadFile, File()]
    ) -> dict[str, Any]:
        """Files like an uploaded file (which is used and deleted, never indexed)."""
        started = time.perf_counter()
        return hits_answer(example(file, lambda path: run_similar(path, p)), started)

    @app.get("/api/duplicates", tags=["index"])
    def duplicates(p: Annotated[DuplicateParams, Query()]) -> list[dict[str, Any]]:
        """Groups of exact copies and near duplicates."""
        from searchengine.duplicates import find_duplicates

        groups = library.call(
            lambda e: find_duplicates(
                e, near=not p.exact_only, threshold=p.threshold, types=types_list(p.type)
            )
        )
        return [g.to_json() for g in groups]

    @app.get("/api/status", tags=["index"])
    def status() -> dict[str, Any]:
        """Files per type and state, each space's model and vectors, and the files waiting
        for a model or that failed, with their reasons."""
        return library.call(lambda e: e.status())

    @app.get("/api/models", tags=["index"])
    def models() -> list[dict[str, Any]]:
        """Each space's model and whether its weights are found here."""
        return library.call(lambda e: e.models.report())

    @app.get("/api/files/{file_id}", tags=["files"])
    def file_info(file_id: FileId) -> dict[str, Any]:
        rec = library.record(file_id)
        return {
            "id": rec.id,
            "path": rec.path,
            "name": os.path.basename(rec.path),
            "type": rec.type,
            "size": rec.size,
            "state": rec.state,
            "reason": rec.reason,
        }

    @app.get("/api/files/{file_id}/media", tags=["files"])
    def media(file_id: FileId) -> FileResponse:
        """The file itself, with HTTP Range (players seek); documents as plain text."""
        found = check_file(library.record(file_id))
        return FileResponse(
            found.path,
            media_type=found.media_type,
            stat_result=found.st,
            headers={"content-security-policy": "sandbox; default-src 'none'"},
        )

    @app.get("/api/files/{file_id}/thumb", tags=["files"])
    def thumb(file_id: FileId, p: Annotated[ThumbParams, Query()]) -> Response:
        """An image, or a video's frame at `at` seconds, as JPEG."""
        rec = library.record(file_id)
        if rec.type not in ("image", "video"):
            raise HTTPException(
                404, f"file {file_id} is {rec.type}: only images and videos have pictures"
            )
        data = thumbs.get(check_file(rec), rec.type, p.at, p.size)
        return Response(
            data, media_type="image/jpeg", headers={"cache-control": "private, max-age=600"}
        )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/api/map", tags=["index"])
    def collection_map(p: Annotated[MapParams, Query()]) -> dict[str, Any]:
        """The stored map of a space (`searchengine map` lays it out): one point per file,
        clusters and their words; files indexed since are counted in `unplaced`."""
        result = library.call(lambda e: e.map(p.space, types=types_list(p.type), path_glob=p.path))
        return result.to_json()

    @app.get("/map", include_in_schema=False)
    def map_page() -> FileResponse:
        return FileResponse(STATIC / "map.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # outermost last: headers on every answer, CORS preflights before the token check
    app.add_middleware(BodyLimit, limit=max_upload + FORM_SLACK)
    app.add_middleware(Guard, token=token)
    app.add_middleware(SameOrigin, cors=cors)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-searchengine-token"],
        )
    app.add_middleware(SecurityHeaders)
    return app


def _errors(app: FastAPI) -> None:
    """Every failure is a JSON object with one clear `error` line, never a traceback."""

    def answer(status: int, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status)

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return answer(400, str(exc))

    @app.exception_handler(NotServable)
    async def not_servable(_: Request, exc: NotServable) -> JSONResponse:
        return answer(exc.status, str(exc))

    @app.exception_handler(BadUpload)
    async def bad_upload(_: Request, exc: BadUpload) -> JSONResponse:
        return answer(exc.status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "bad request"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such address"
        return JSONResponse(
            {"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return answer(422, "; ".join(problems), detail=jsonable_encoder(exc.errors()))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error serving %s", request.url.path)
        return answer(500, f"internal error ({type(exc).__name__}); the server log has details")
