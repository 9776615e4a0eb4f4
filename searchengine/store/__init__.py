"""Storage: the SQLite catalog (source of truth) and per-space FAISS indexes (derived caches)."""
