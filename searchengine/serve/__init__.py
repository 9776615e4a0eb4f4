"""`searchengine serve`: a JSON API and a web page over one index (FastAPI + uvicorn).

app.py holds the routes, security.py who may call and how much, media.py the files handed
out, uploads.py example files sent in, static/ the page (plain HTML, CSS and JS, no build)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from searchengine.serve.app import create_app as create_app
    from searchengine.serve.server import run_server as run_server

__all__ = ["create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from searchengine.serve.app import create_app

        return create_app
    if name == "run_server":
        from searchengine.serve.server import run_server

        return run_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
