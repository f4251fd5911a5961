"""The indexing pipeline: plan -> read/decode -> embed -> write, wired by `runner`."""
