"""A trained model in portable forms for small devices (ONNX, run by onnxruntime)."""
