"""The modality names, in their canonical order (the one tuple every package reads)."""

#: Every modality a source can capture and a model can encode, in canonical order.
MODALITIES: tuple[str, ...] = ("video", "audio", "imu", "pose")
