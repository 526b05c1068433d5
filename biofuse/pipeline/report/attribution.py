"""Where along the sequence a prediction comes from: gradient x input per codon.

For a trained model and a few rows, the gradient of the prediction with respect to each
modality's features on the codon grid (after alignment, before fusion), times those features,
summed over the feature axis: one number per codon and modality. Methods without a codon grid
(``seqconcat``, ``isoformer``) are attributed on their encoders' own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from biofuse.fusion.model import FusionModel
from biofuse.modality import Modality
from biofuse.pipeline.data import Dataset
from biofuse.pipeline.train.inputs import load_inputs


@dataclass
class Attribution:
    ids: list[str]
    aligned: bool  # positions are codons (True) or the encoders' own tokens
    values: dict[str, list[np.ndarray]]  # modality -> per row [positions]
    predictions: np.ndarray  # [rows] the attributed output


def attribute(model: FusionModel, ds: Dataset, rows: np.ndarray, encoders: dict[str, str],
              cache_root, output: int = 0) -> Attribution:
    """Gradient x input of output ``output`` (for classification: of the predicted class) for
    ``rows`` of ``ds``; ``encoders``: modality -> store id (from the run's config)."""
    sub = replace(ds, frame=ds.frame[rows.tolist()])
    inputs = load_inputs(sub, {Modality.parse(m): e for m, e in encoders.items()}, cache_root,
                         aligned=model.aligner is not None,
                         extract_hint=lambda m, e: "biofuse extract ...")
    model.eval()
    feats, masks, present, grid = inputs.batch(np.arange(len(rows)))
    feats = {str(m): f for m, f in feats.items()}
    masks = {str(m): v for m, v in masks.items()}
    present = {str(m): v for m, v in present.items()}
    if model.aligner is not None:
        with torch.no_grad():
            feats, grid_mask = model.aligner(feats, masks, grid)
        masks = {m: grid_mask for m in feats}
    feats = {m: f.detach().requires_grad_(True) for m, f in feats.items()}
    fused = model.fusion(feats, masks, present)
    pred = model.head(fused.x, fused.mask)
    chosen = (pred.argmax(1) if model.config.n_outputs > 1 and output < 0
              else torch.full((len(rows),), max(output, 0)))
    picked = pred.gather(1, chosen[:, None]).squeeze(1)
    picked.sum().backward()
    values = {}
    for m, f in feats.items():
        a = (f.grad * f).sum(-1).detach()  # [B, T]
        values[m] = [a[i][masks[m][i]].numpy() for i in range(len(rows))]
    return Attribution(sub.frame["id"].to_list(), model.aligner is not None, values,
                       picked.detach().numpy())
