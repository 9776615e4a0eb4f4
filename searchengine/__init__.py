"""searchengine: local-first semantic search over documents, photos, recordings and videos.

from searchengine import Engine
with Engine("indexes/mine", create=True) as engine:
    engine.index(["~/Documents"])
    for hit in engine.search("tax return 2023", k=5):
        print(hit.score, hit.path)

The names below are imported on first use, so that importing any part of the package (the
command line's query path above all) does not pay for the rest of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time, `__getattr__`
    from searchengine.engine import Engine as Engine
    from searchengine.errors import ModelUnavailable as ModelUnavailable
    from searchengine.errors import UserError as UserError
    from searchengine.indexer import IndexSummary as IndexSummary
    from searchengine.thumbs import thumbnail as thumbnail
    from searchengine.types import Hit as Hit
    from searchengine.types import HitSegment as HitSegment

_EXPORTS = {
    "Engine": "searchengine.engine",
    "Hit": "searchengine.types",
    "HitSegment": "searchengine.types",
    "IndexSummary": "searchengine.indexer",
    "ModelUnavailable": "searchengine.errors",
    "UserError": "searchengine.errors",
    "thumbnail": "searchengine.thumbs",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
