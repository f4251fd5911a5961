"""Errors a command reports as a one-line message (not a traceback).

They live in a module that imports nothing, so the command line can name them (cli_support's
USER_ERRORS) without loading torch, FAISS or Milvus; the modules that raise them import them here.
"""


class ModelMismatch(RuntimeError):
    """The requested model differs from the one the existing index was built with."""


class ModelLoadError(RuntimeError):
    """A model could not be built or restored; the message says what to do."""


class MilvusUnavailable(RuntimeError):
    """pymilvus/milvus-lite missing, the server unreachable, or the Lite file held by another process."""


class RayUnavailable(RuntimeError):
    """ray[data] is not installed, or the cluster cannot be reached."""


class NoImagesFound(ValueError):
    """`whysim index DIR` found no image file under DIR (and none was indexed from it before)."""
