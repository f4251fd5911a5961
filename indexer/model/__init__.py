"""The Siamese branch: backbone, pooling, optional projection head, and the card that describes it."""
