"""What an ONNX export folder holds, shared by the exporter and the runtime (no torch here)."""

EXPORT_FORMAT = "mmg-live-onnx"
EXPORT_VERSION = 1
MANIFEST = "export.json"  #: the header beside the graphs
BACKENDS = ("torch", "onnxruntime")  #: what runs a model live (``mmg-live --backend``)
