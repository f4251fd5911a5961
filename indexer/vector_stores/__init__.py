"""Where the vectors live: a FAISS file in the data directory (default) or a Milvus collection.

Both implement `protocol.VectorStore` (ids are catalog ids) and are reached through a
`protocol.VectorLocation`, which knows how to open, save and stamp them; `choice` turns a
`--vector-store` value (remembered in the catalog's settings) into a location.
"""
