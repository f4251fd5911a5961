"""The HTTP API: Flask blueprints, request and response models, limits, metrics and logs.

Flask lives here and only here in `search` (import-linter checks it: pyproject.toml)."""
