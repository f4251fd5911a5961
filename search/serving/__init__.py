"""Query-time state without Flask: the served index snapshot, the model host, uploads, caches,
pictures and thumbnails, explanations on demand, re-indexing, and the `whysim search` command."""
