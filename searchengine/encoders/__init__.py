"""Model loading and batched embedding, one module per space; see registry.py for resolution."""
