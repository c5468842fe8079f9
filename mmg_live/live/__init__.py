"""Live path: ring buffers, windows, the inference engine and its sinks (session folders live in
:mod:`devices.session`).

Names are imported lazily (:func:`mmg_common.lazy.lazy_exports`) so that importing one submodule
(e.g. the buffer) does not pull in torch.
"""

from __future__ import annotations

from mmg_common.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "StreamBuffer": "buffer",
    "Synchronizer": "buffer",
    "InferenceEngine": "engine",
    "Prediction": "prediction",
    "SourceBuffers": "source_buffers",
    "HeadlessInference": "headless",
    "read_window": "windowing",
})
