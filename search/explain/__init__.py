"""The explanation method: paired Grad-CAM (factual and counterfactual), region correspondence
and the overlays drawn from them. Torch, numpy and Pillow only: no serving state, no HTTP."""
