"""The embedding forward pass behind one small interface, on the runtime that runs it fastest.

`open_session` (choice.py) returns an EmbeddingSession (session.py): uint8 images in,
L2-normalised float32 vectors out, the same vectors whichever runtime is behind it. OpenVINO
and ONNX Runtime run a converted copy of the branch, cached on disk (conversion.py); PyTorch
stays where gradients are needed (explanations, training) and on CUDA.
"""
