"""Query-time: top-k search over an index and paired Grad-CAM explanations."""
