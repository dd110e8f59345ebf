"""Model server and evaluation code of the inference image (KServe ModelServer + TF/onnxruntime)."""
