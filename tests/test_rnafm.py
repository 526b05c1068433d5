"""RNA-FM through multimolecule, on a tiny random model saved to a temp dir."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("multimolecule")

from biofuse.pipeline.encoders import EncoderRequest, build_encoder  # noqa: E402
from tests.helpers.tiny_models import save_tiny_rnafm  # noqa: E402

RNA = ["ACGUACGUAGGC", "ACGUNNACGU", "AUG", "GGGGCCCCAAAAUUUUGGGGCCCC"]


@pytest.fixture(scope="module")
def rnafm_dir(tmp_path_factory):
    return save_tiny_rnafm(tmp_path_factory.mktemp("rnafm"))


def test_matches_a_direct_multimolecule_forward(rnafm_dir):
    import torch
    from multimolecule import RnaFmModel, RnaTokenizer

    enc = build_encoder(EncoderRequest(model=str(rnafm_dir), modality="rna"))
    ours = enc.forward([enc.tokenize(s) for s in RNA])
    ref = RnaFmModel.from_pretrained(str(rnafm_dir), add_pooling_layer=False).eval()
    tok = RnaTokenizer.from_pretrained(str(rnafm_dir))
    for seq, got in zip(RNA, ours):
        with torch.inference_mode():
            want = ref(**tok(seq, return_tensors="pt")).last_hidden_state[0, 1:-1].numpy()
        assert got.shape == (len(seq), 16)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_batch_invariance_and_layers(rnafm_dir):
    enc = build_encoder(EncoderRequest(model=str(rnafm_dir), modality="rna"))
    ids = [enc.tokenize(s) for s in RNA]
    together = enc.forward(ids)
    for i, one in enumerate(ids):
        np.testing.assert_allclose(together[i], enc.forward([one])[0], atol=1e-5)
    assert enc.tokenize("ACGT") == enc.tokenize("ACGU")  # DNA alphabet is read as RNA
    first = build_encoder(EncoderRequest(model=str(rnafm_dir), modality="rna", layer=1))
    assert first.fingerprint().layer == 1
    assert not np.allclose(first.forward(ids[:1])[0], together[0])
