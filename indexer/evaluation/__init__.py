"""Measuring retrieval and pair-verification quality on labelled collections."""
