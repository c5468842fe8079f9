"""The form of a trained model that the live engine runs windows through on a CPU."""

from __future__ import annotations

import copy

from mmg_live.models.mmg import MMGModel
from mmg_live.models.video import OneDnnSmall3DCNN


def cpu_inference_model(model: MMGModel) -> MMGModel:
    """``model`` with every encoder that has a faster CPU inference form swapped for it (today the
    ``lite`` video CNN: :class:`~mmg_live.models.video.OneDnnSmall3DCNN`), as a copy in eval mode;
    ``model`` itself when none has. The outputs are the same to float rounding (~1e-6), so
    prototypes and checkpoints stay those of ``model``. Inference only.
    """
    swappable = [m for m, encoder in model.encoders.items() if OneDnnSmall3DCNN.supports(encoder)]
    if not swappable:
        return model
    fast = copy.deepcopy(model).eval()
    for m in swappable:
        fast.encoders[m] = OneDnnSmall3DCNN(fast.encoders[m])
    return fast
