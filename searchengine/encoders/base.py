"""What every space's encoder offers, and the shared steps of finding weights."""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import numpy as np

from searchengine.errors import ModelUnavailable

T = TypeVar("T")


class Encoder(Protocol):
    """A loaded model that owns one vector space."""

    space: str
    dim: int

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Text queries -> L2-normalised float32 rows."""
        ...

    def embed_items(self, payloads: list[Any]) -> np.ndarray:
        """Segment payloads (text chunks, images, PCM windows) -> L2-normalised float32 rows."""
        ...


@dataclass
class Resolved:
    """Where a model's weights were found and how; `location` is a path or a hub id."""

    space: str
    name: str
    location: str
    source: str  # "path", "package", "cache", "download"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attempts:
    """The places looked in, so a missing model explains itself in one line."""

    space: str
    name: str
    tried: list[str] = field(default_factory=list)

    def fail(self, how_to_fix: str) -> ModelUnavailable:
        where = "; ".join(self.tried) or "nowhere"
        return ModelUnavailable(
            f"{self.space} model '{self.name}' not found (tried: {where}). {how_to_fix}"
        )


OFFLINE_HINT = "--offline or SEARCHENGINE_OFFLINE=1"
PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "True", "yes", "on")
_we_set_hub_offline = False  # HF_HUB_OFFLINE=1 in our environment is ours, not the user's
_reachable: dict[str, bool] = {}  # endpoint -> answered a TCP connect, once per process


def offline() -> bool:
    """The user forbade the network: `--offline`, SEARCHENGINE_OFFLINE=1, or HF_HUB_OFFLINE=1
    set before we ran."""
    if os.environ.get("SEARCHENGINE_OFFLINE", "") in _TRUE:
        return True
    return not _we_set_hub_offline and os.environ.get("HF_HUB_OFFLINE", "") in _TRUE


def downloads_allowed() -> bool:
    """Missing default weights download on first use unless the user said offline;
    SEARCHENGINE_ALLOW_DOWNLOAD=1 forces them on over HF_HUB_OFFLINE (not over --offline)."""
    if os.environ.get("SEARCHENGINE_OFFLINE", "") in _TRUE:
        return False
    return os.environ.get("SEARCHENGINE_ALLOW_DOWNLOAD", "") == "1" or not offline()


def force_hub_offline() -> None:
    """Libraries never reach the hub on their own (loading is always from local files); our
    downloads lift this for their own call only (`hub_online`). Keep library output quiet."""
    global _we_set_hub_offline
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # on again for our downloads
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # an unreachable or stalling hub costs seconds, not minutes
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    if os.environ.get("HF_HUB_OFFLINE", "") not in _TRUE:
        _we_set_hub_offline = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported before us: its flags were read already
        constants.HF_HUB_OFFLINE = True


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One short TCP connect to the hub (or the HTTPS proxy in the environment), once per
    process, so an unplugged machine learns it in seconds instead of through retries."""
    endpoint = hub_endpoint()
    if endpoint in _reachable:
        return _reachable[endpoint]
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlsplit(proxy if proxy and endpoint.startswith("https") else endpoint)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    answered: list[bool] = []

    def probe() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout + 0.5)
    _reachable[endpoint] = bool(answered)
    return _reachable[endpoint]


_lookup = threading.local()


@contextmanager
def lookup_only() -> Iterator[None]:
    """Resolve without downloading, in this thread: `status` and `models` report where
    weights are; only using a model (`index`, a query) may fetch it."""
    _lookup.on = True
    try:
        yield
    finally:
        _lookup.on = False


def download_blocked() -> str | None:
    """Why a download is not tried now (for `Attempts.tried`), or None to try it."""
    if not downloads_allowed():
        return f"download (off: {OFFLINE_HINT})"
    if getattr(_lookup, "on", False):
        return "download (on first use, by index)"
    if not hub_reachable():
        return f"download ({hub_endpoint()} unreachable)"
    return None


@contextmanager
def hub_online() -> Iterator[None]:
    """Let huggingface_hub reach the network for one download, with its progress bars on
    stderr when that is a terminal."""
    import huggingface_hub.constants as constants

    bars = importlib.import_module("huggingface_hub.utils.tqdm")
    saved = (constants.HF_HUB_OFFLINE, bars.HF_HUB_DISABLE_PROGRESS_BARS)
    constants.HF_HUB_OFFLINE = False
    if sys.stderr.isatty():
        bars.HF_HUB_DISABLE_PROGRESS_BARS = None
        bars.enable_progress_bars()
    else:
        bars.HF_HUB_DISABLE_PROGRESS_BARS = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, bars.HF_HUB_DISABLE_PROGRESS_BARS = saved


def fetch(attempts: Attempts, get: Callable[[], T]) -> T | None:
    """Run a download (`get`) when allowed and the hub answers; None, with the reason noted
    in `attempts`, when not or when it fails, so the files wait as pending."""
    blocked = download_blocked()
    if blocked is not None:
        attempts.tried.append(blocked)
        return None
    try:
        with hub_online():
            return get()
    except Exception as exc:  # network, disk, hub errors: the files wait, the run goes on
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        attempts.tried.append(f"download failed ({type(exc).__name__}: {first})")
        return None


def hf_cached_snapshot(repo_id: str) -> Path | None:
    """A complete local Hugging Face snapshot of `repo_id`, without any network call."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def hf_download(repo_id: str) -> Path:
    """A snapshot of `repo_id` from the hub into the standard cache; ModelUnavailable when it
    cannot be had (offline, hub unreachable, download failed)."""
    from huggingface_hub import snapshot_download

    attempts = Attempts("hub", repo_id)
    got = fetch(attempts, lambda: snapshot_download(repo_id))
    if got is None:
        raise attempts.fail(f"Run where {hub_endpoint()} is reachable, without {OFFLINE_HINT}.")
    return Path(got)


def normalise(rows: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32 so inner product is cosine similarity."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(rows / norms)


DEVICES = ("cpu", "cuda", "auto")


def load_or_unavailable(kind: str, resolved: Resolved, make: Callable[[], T]) -> T:
    """Build a model; any failure becomes ModelUnavailable with its first line, so the
    space waits as `pending` instead of crashing the run."""
    try:
        return make()
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelUnavailable(
            f"{kind} model '{resolved.name}' failed to load from {resolved.location}: {first}"
        ) from exc


def torch_device() -> str:
    """Where the torch encoders run: `SEARCHENGINE_DEVICE` = cpu (the default, so vectors are
    the same on every machine), cuda or auto (a GPU when torch sees one). A Ray worker on a
    GPU node is started with cuda; without a usable GPU it runs on the CPU, never fails."""
    wanted = os.environ.get("SEARCHENGINE_DEVICE", "cpu").strip().lower() or "cpu"
    if wanted not in DEVICES:
        raise ValueError(f"SEARCHENGINE_DEVICE wants one of {', '.join(DEVICES)}, not {wanted!r}")
    if wanted == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_torch_threads() -> None:
    """Use every core we were given, explicitly (`SEARCHENGINE_THREADS` overrides)."""
    import torch

    threads = int(os.environ.get("SEARCHENGINE_THREADS", "0")) or (os.cpu_count() or 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def resolve_folder_model(space: str, name: str, repo: str | None, how_to_fix: str) -> Resolved:
    """The resolution order of DESIGN.md for models that are folders: an explicit local
    folder, a package that ships the weights, the Hugging Face cache of `repo`, then a
    download when allowed. `repo` None means `name` can only be a local folder."""
    from searchengine.encoders.registry import packaged_path

    attempts = Attempts(space, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return Resolved(space, name, str(path.resolve()), "path")
    if repo is None:
        attempts.tried.append(f"local folder {name} (no such folder)")
        raise attempts.fail(how_to_fix)
    attempts.tried.append("local path")
    shipped = packaged_path(name)
    if shipped is not None:
        return Resolved(space, name, str(shipped), "package")
    attempts.tried.append("installed packages")
    cached = hf_cached_snapshot(repo)
    if cached is not None:
        return Resolved(space, name, str(cached), "cache")
    attempts.tried.append("Hugging Face cache")
    from huggingface_hub import snapshot_download

    got = fetch(attempts, lambda: snapshot_download(repo))
    if got is not None:
        return Resolved(space, name, str(got), "download")
    raise attempts.fail(how_to_fix)
