"""Merge one modality's trained parts from a second run into a checkpoint.

The default model is trained on two datasets that share no modality: UTD-MHAD (video + IMU,
the action classes) and FSDD (audio). ``default_audio_fusion`` trains the audio encoder and
the fusion's audio entry on FSDD with every shared weight frozen; :func:`compose` copies
those audio parts (and the audio normalisation stats) into the UTD-MHAD model, after checking
that every weight the donor run was not allowed to change is still bit-identical to the base
— so the composed model's video + IMU outputs are exactly the base model's.

Command line: ``python -m trainer.compose BASE DONOR --modality audio --out OUT``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from mmg_live.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mmg_live.models.mmg import MMGModel


def modality_parts(modality: str) -> tuple[str, ...]:
    """State-dict prefixes that belong to ``modality`` alone (encoder, projection, fusion entry)."""
    return (f"encoders.{modality}.", f"projections.{modality}.", f"fusion.token_proj.{modality}.",
            f"fusion.modality_embed.{modality}", f"fusion.slot_proj.{modality}.")


def _classifier_like(key: str) -> bool:
    # class-specific heads: the donor was trained on other classes, so these legitimately differ
    return key.startswith(("classifier.", "unimodal_heads."))


def compose(base: MMGModel, donor: MMGModel, modality: str) -> tuple[MMGModel, dict[str, Any]]:
    """``base`` with ``modality``'s parts, normalisation stats and trained flags from ``donor``.

    The modality's encoder may differ between the two (its config entry comes from the donor
    too: the UTD-MHAD base never trained audio, so its audio encoder is a placeholder).
    Raises ``ValueError`` when the two models have different configs (other than specs and
    ``modality``'s encoder), when
    the donor did not train ``modality``'s encoder and fusion entry, or when the donor changed
    any shared weight (then the base's other modalities would no longer behave as measured).
    """
    base_encoders = {m: e for m, e in base.config.to_dict()["encoders"].items() if m != modality}
    donor_encoders = {m: e for m, e in donor.config.to_dict()["encoders"].items() if m != modality}
    if base_encoders != donor_encoders or base.config.fusion != donor.config.fusion:
        raise ValueError("compose: base and donor have different encoder or fusion configurations")
    missing = [what for what, parts in (("encoder", donor.trained.encoders), ("fusion", donor.trained.fusion))
               if modality not in parts]
    if missing:
        raise ValueError(f"compose: the donor did not train the {modality} {' and '.join(missing)}")
    prefixes = modality_parts(modality)
    base_state, donor_state = base.state_dict(), donor.state_dict()
    copied, changed_shared = [], []
    for key, value in donor_state.items():
        if key.startswith(prefixes):
            copied.append(key)
        elif not _classifier_like(key) and (key not in base_state
                                            or not torch.equal(value.cpu(), base_state[key].cpu())):
            changed_shared.append(key)
    if changed_shared:
        raise ValueError(f"compose: the donor changed {len(changed_shared)} shared weights "
                         f"(e.g. {changed_shared[0]}); freeze them in its recipe")
    config = copy.deepcopy(base.config)
    config.encoders[modality] = copy.deepcopy(donor.config.encoders[modality])
    merged = MMGModel(config, base.class_names)
    state = {k: v.detach().clone() for k, v in base_state.items() if not k.startswith(prefixes)}
    for key in copied:
        state[key] = donor_state[key].detach().clone()
    merged.load_state_dict(state)
    specs = merged.config.specs.to_dict()
    specs[modality] = donor.config.specs.to_dict()[modality]
    merged.config.specs = type(merged.config.specs).from_dict(specs)
    merged.trained = copy.deepcopy(base.trained)
    for parts in (merged.trained.encoders, merged.trained.fusion):
        if modality not in parts:
            parts.append(modality)
    return merged, {"modality": modality, "tensors": len(copied)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.compose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="checkpoint whose classes, classifier and other modalities are kept")
    parser.add_argument("donor", help="checkpoint that trained MODALITY's encoder and fusion entry")
    parser.add_argument("--modality", default="audio", help="modality to take from the donor (default audio)")
    parser.add_argument("--classifier", choices=("fused", "ensemble"), default=None,
                        help="base-class scoring stored in the output (default: the base's); ensemble = "
                             "geometric mean of the fused classifier and the unimodal heads (late fusion)")
    parser.add_argument("--out", required=True, help="output checkpoint")
    args = parser.parse_args(argv)
    try:
        base, base_info = load_checkpoint(args.base, device="cpu")
        donor, donor_info = load_checkpoint(args.donor, device="cpu")
        merged, summary = compose(base, donor, args.modality)
        if args.classifier is not None:
            merged.config.classifier = args.classifier
    except (CheckpointError, ValueError) as exc:
        print(f"compose: {exc}", file=sys.stderr)
        return 2
    training = {
        "recipe": "composed",
        "composed_from": {"base": str(args.base), "donor": str(args.donor), **summary},
        "base": {"recipe": base_info.training.get("recipe"), "history": base_info.training.get("history", [])[-20:]},
        "donor": {"recipe": donor_info.training.get("recipe"), "history": donor_info.training.get("history", [])[-20:]},
    }
    out = save_checkpoint(Path(args.out), merged, training=training)
    print(f"{out}: {base_info.training.get('recipe')} + {args.modality} from {donor_info.training.get('recipe')} "
          f"({summary['tensors']} tensors); trained encoders {sorted(merged.trained.encoders)}, "
          f"fusion {sorted(merged.trained.fusion)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
