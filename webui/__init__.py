"""The web layer: Flask app factory, HTML pages, and the `whysim` command-line entry point."""
