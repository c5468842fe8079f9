"""What ``mmg-live`` was asked to do, as one typed value for the GUI and the headless run."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmg_live.sources import DeviceConfig


@dataclass(frozen=True)
class LiveOptions:
    """The parsed ``mmg-live`` command line.

    Attributes:
        devices: the sources to open.
        checkpoint: model checkpoint (None: the GUI uses the shipped default; headless, see
            :attr:`runs_inference`).
        device: compute device (``auto``, ``cpu`` or ``cuda``).
        prototypes: custom-action prototype bank file.
        jsonl: append predictions as JSON lines to this file.
        publish: publish predictions over ZeroMQ on this endpoint.
        record: record every source into this new session folder.
        video_codec: codec of recorded video (``ffv1``, ``mp4v`` or ``mjpg``).
        calibration: calibration profile file (applied to the sources, stored with recordings).
        seconds: stop after this many seconds (None: run until stopped).
        source_label: shown prominently in the GUI (e.g. that the input is a replay).
        demo: the built-in replay with the default model.
        headless: no GUI.
        stride_s: seconds between predictions.
        backend: ``torch`` or ``onnxruntime`` (the model's ONNX export runs the windows).
        onnx_dir: the ONNX export to run (None: exported once into the user's cache).
    """

    devices: DeviceConfig = field(default_factory=DeviceConfig)
    checkpoint: str | None = None
    device: str = "auto"
    prototypes: str | None = None
    jsonl: str | None = None
    publish: str | None = None
    record: str | None = None
    video_codec: str = "ffv1"
    calibration: str | None = None
    seconds: float | None = None
    source_label: str | None = None
    demo: bool = False
    headless: bool = False
    stride_s: float = 0.25
    backend: str = "torch"
    onnx_dir: str | None = None

    @property
    def runs_inference(self) -> bool:
        """Headless: predictions are made when a model or a prediction output is asked for."""
        return bool(self.checkpoint or self.jsonl or self.prototypes or self.publish)
