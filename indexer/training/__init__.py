"""Training a Siamese branch on a class-per-folder collection: split, pairs, losses, feature cache, loop."""
