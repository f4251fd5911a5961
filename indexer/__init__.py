"""Turns a folder of images into searchable vectors: model, catalog, vector store, pipeline."""
