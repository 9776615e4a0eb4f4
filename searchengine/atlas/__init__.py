"""The map of a collection: one point per file, laid out in 2-D from its whole-file vector
(PCA then UMAP), grouped into labelled clusters, stored in the index so the next run only
places new files, and drawn as an offline HTML page or a PNG.

Modules: `layout` (the reducer: fit, place, save), `points` (the map tables in the
catalog), `labels` (clusters and their distinctive words), `build` (the run: what to
refit, what to place, what to drop), `render` (HTML and PNG). umap-learn (numba) is
imported only here, never on the search path."""

from searchengine.atlas.build import MapPoint, MapResult, build_map, read_map

__all__ = ["MapPoint", "MapResult", "build_map", "read_map"]
