"""Model server and evaluation code of the inference image (V1 + V2 REST over TF/onnxruntime)."""

__version__ = "0.2.0"
