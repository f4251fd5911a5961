"""Turns a folder of images into searchable vectors: model, catalog, vector store, pipeline."""
import os

# torch's OpenMP runtime (libgomp) spin-waits at every parallel barrier by default. When the
# cores are shared (our own decode workers, a web server, other jobs), a spinning thread holds
# the core that the thread it waits for needs: on two busy cores one Lite0 forward pass of two
# 64x64 images took 0.5-3 s instead of 20 ms, and a batch of 64 at 224x224 ran 45% slower.
# Sleeping waits avoid that. libgomp reads this once, when torch loads it, so it is set here,
# before any indexer module imports torch; a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
