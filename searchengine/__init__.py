"""searchengine: local-first semantic search over documents, photos, recordings and videos.

from searchengine import Engine
with Engine("indexes/mine", create=True) as engine:
    engine.index(["~/Documents"])
    for hit in engine.search("tax return 2023", k=5):
        print(hit.score, hit.path)
"""

from searchengine.engine import Engine, IndexSummary
from searchengine.errors import ModelUnavailable, UserError
from searchengine.thumbs import thumbnail
from searchengine.types import Hit, HitSegment

__all__ = [
    "Engine",
    "Hit",
    "HitSegment",
    "IndexSummary",
    "ModelUnavailable",
    "UserError",
    "thumbnail",
]
__version__ = "0.1.0"
