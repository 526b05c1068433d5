"""Encoders through their real loading path, on tiny random models saved to a temp dir."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from biofuse.errors import ConfigError  # noqa: E402
from biofuse.pipeline.encoders import EncoderRequest, build_encoder, encoder_info  # noqa: E402
from biofuse.pipeline.encoders.hub import ModelError  # noqa: E402
from tests.helpers.tiny_models import NT_VOCAB, save_tiny_esm2, save_tiny_nt_v2  # noqa: E402

PROTEINS = ["MKTAYIAKQR", "MSTQ", "MKVLAAGIWLLLLAAQPAMAQVQ", "M*KX"]
DNA = ["ACGTACGTACGTAA", "ACGTNACGTACGTACG", "ACG", "TTTTTTTTTTTTTTTTTTTTTTTTT"]


@pytest.fixture(scope="module")
def esm2_dir(tmp_path_factory):
    return save_tiny_esm2(tmp_path_factory.mktemp("esm2"))


@pytest.fixture(scope="module")
def nt_dir(tmp_path_factory):
    return save_tiny_nt_v2(tmp_path_factory.mktemp("nt"))


def request(model, modality="protein", **kw):
    return EncoderRequest(model=str(model), modality=modality, **kw)


def test_esm2_matches_a_direct_transformers_forward(esm2_dir):
    from transformers import EsmModel, EsmTokenizer

    enc = build_encoder(request(esm2_dir))
    ours = enc.forward([enc.tokenize(s) for s in PROTEINS])
    ref_model = EsmModel.from_pretrained(esm2_dir, add_pooling_layer=False).eval()
    tok = EsmTokenizer(str(esm2_dir / "vocab.txt"))
    for seq, got in zip(PROTEINS, ours):
        batch = tok([seq.replace("*", "X")], return_tensors="pt")
        with torch.inference_mode():
            want = ref_model(**batch).last_hidden_state[0, 1:-1].numpy()
        assert got.shape == (len(seq), 16)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_embeddings_do_not_depend_on_batch_composition(esm2_dir, nt_dir):
    for model, modality, seqs in [(esm2_dir, "protein", PROTEINS), (nt_dir, "dna", DNA)]:
        enc = build_encoder(request(model, modality))
        ids = [enc.tokenize(s) for s in seqs]
        together = enc.forward(ids)
        for i, one in enumerate(ids):
            alone = enc.forward([one])[0]
            np.testing.assert_allclose(together[i], alone, atol=1e-5)


def test_intermediate_layer_matches_hidden_states(esm2_dir):
    from transformers import EsmModel

    enc = build_encoder(request(esm2_dir, layer=1))
    got = enc.forward([enc.tokenize("MKTAYIAK")])[0]
    ref = EsmModel.from_pretrained(esm2_dir, add_pooling_layer=False).eval()
    ids = torch.tensor([[0, *enc.tokenize("MKTAYIAK"), 2]])
    with torch.inference_mode():
        want = ref(input_ids=ids, output_hidden_states=True).hidden_states[1][0, 1:-1].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(enc.model.encoder.layer) == 1  # later layers are not even built
    with pytest.raises(ModelError, match="out of range"):
        build_encoder(request(esm2_dir, layer=7))


def test_fingerprint_records_what_changes_the_numbers(esm2_dir):
    base = build_encoder(request(esm2_dir)).fingerprint()
    assert base.layer == 2 and base.compute_dtype == "fp32" and len(base.revision) == 16
    assert (base.modality, base.dim, base.nt_per_token) == ("protein", 16, 3)  # typed fields
    assert build_encoder(request(esm2_dir, layer=1)).fingerprint().id != base.id
    assert build_encoder(request(esm2_dir, dtype="bf16")).fingerprint().id != base.id
    assert build_encoder(request(esm2_dir, long_policy="truncate")).fingerprint().id != base.id
    assert build_encoder(request(esm2_dir)).fingerprint().id == base.id


# ------------------------------------------------------------------ Nucleotide Transformer v2

def test_nt_tokenizer_6mers_with_single_base_fallback(nt_dir):
    enc = build_encoder(request(nt_dir, "dna"))
    vocab = {t: i for i, t in enumerate(NT_VOCAB)}
    toks = enc.tokenize("ACGTACGTACGTA")  # two 6-mers, then one leftover base
    assert toks == [vocab["ACGTAC"], vocab["GTACGT"], vocab["A"]]
    toks = enc.tokenize("ACGNACGTAACGTT")  # an N breaks the 6-mer: single bases until one fits
    assert toks == [vocab[c] for c in "ACGN"] + [vocab["ACGTAA"], vocab["C"], vocab["G"],
                                                 vocab["T"], vocab["T"]]
    assert not enc.add_eos  # NT prepends <cls> only


def _reference_nt_v2(state: dict, cfg: dict, ids: list[int]) -> np.ndarray:
    """NT-v2's forward written from its published description (pre-LN transformer, rotary
    attention, bias-free SwiGLU feed-forward), independent of transformers' ESM classes."""
    t = {k.removeprefix("esm."): v.double() for k, v in state.items()}
    d, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // heads
    x = t["embeddings.word_embeddings.weight"][torch.tensor([3, *ids])]  # <cls> + tokens
    n = x.shape[0]
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.outer(torch.arange(n, dtype=torch.float64), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rot(v):  # v: [heads, n, hd]
        a, b = v[..., : hd // 2], v[..., hd // 2:]
        return v * cos + torch.cat([-b, a], -1) * sin

    def ln(v, p):
        return torch.nn.functional.layer_norm(v, (d,), t[p + ".weight"], t[p + ".bias"], 1e-12)

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        h = ln(x, p + "attention.LayerNorm")
        q, k, v = (h @ t[p + f"attention.self.{m}.weight"].T + t[p + f"attention.self.{m}.bias"]
                   for m in ("query", "key", "value"))
        q, k, v = (m.view(n, heads, hd).transpose(0, 1) for m in (q, k, v))
        q, k = rot(q * hd ** -0.5), rot(k)
        ctx = torch.softmax(q @ k.transpose(1, 2), -1) @ v
        ctx = ctx.transpose(0, 1).reshape(n, d)
        x = x + ctx @ t[p + "attention.output.dense.weight"].T + t[p + "attention.output.dense.bias"]
        h = ln(x, p + "LayerNorm")
        a, b = (h @ t[p + "intermediate.dense.weight"].T).chunk(2, -1)
        x = x + (torch.nn.functional.silu(a) * b) @ t[p + "output.dense.weight"].T
    x = ln(x, "encoder.emb_layer_norm_after")
    return x[1:].numpy()


def test_nt_v2_matches_the_published_architecture(nt_dir):
    import json

    from safetensors.torch import load_file

    state = load_file(str(nt_dir / "model.safetensors"))
    cfg = json.loads((nt_dir / "config.json").read_text())
    assert state["esm.encoder.layer.0.intermediate.dense.weight"].shape == (64, 16)  # 2 x 32
    assert "esm.encoder.layer.0.output.dense.bias" not in state  # bias-free
    enc = build_encoder(request(nt_dir, "dna"))
    for seq in DNA:
        ids = enc.tokenize(seq)
        got = enc.forward([ids])[0]
        np.testing.assert_allclose(got, _reference_nt_v2(state, cfg, ids), atol=1e-4)


def test_nt_v2_loads_without_remote_code(nt_dir):
    enc = build_encoder(request(nt_dir, "dna"))
    assert type(enc.model.encoder.layer[0].intermediate).__name__ == "GatedFeedForward"
    with pytest.raises(ModelError, match="trust-remote-code"):
        build_encoder(request(nt_dir, "dna", trust_remote_code=True))


# ------------------------------------------------------------------ errors and registry

def test_offline_without_local_copy_fails_fast_with_the_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(ModelError) as err:
        build_encoder(request("esm2_t6_8M"))
    assert time.perf_counter() - t < 5
    msg = str(err.value)
    assert "HF_HOME" in msg and "--model PATH" in msg and "--model onehot" in msg


def test_unknown_model_and_wrong_modality(tmp_path):
    with pytest.raises(ModelError, match="neither a registered encoder"):
        build_encoder(request("not_a_model"))
    with pytest.raises(ConfigError, match="embeds protein, not dna"):
        encoder_info("esm2_t6_8M", "dna")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        build_encoder(request(tmp_path / "empty"))


def test_broken_checkpoint_is_a_clear_error(esm2_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(esm2_dir, broken)
    cfg = broken / "config.json"
    cfg.write_text(cfg.read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3'))
    enc = build_encoder(request(broken))
    with pytest.raises(ModelError, match="do not fit the architecture"):
        enc.forward([enc.tokenize("MK")])


def test_bf16_stays_close_to_fp32(esm2_dir):
    ids = [build_encoder(request(esm2_dir)).tokenize(s) for s in PROTEINS]
    fp32 = build_encoder(request(esm2_dir)).forward(ids)
    bf16 = build_encoder(request(esm2_dir, dtype="bf16")).forward(ids)
    for a, b in zip(fp32, bf16):
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        assert cos.min() > 0.99, cos.min()
    assert math.isfinite(float(np.abs(bf16[0]).max()))


def test_onehot_for_every_modality():
    for modality, seq, dim in [("protein", "MK*X", 22), ("rna", "ACGUN", 5), ("dna", "ACGTN", 5)]:
        enc = build_encoder(request("onehot", modality))
        out = enc.forward([enc.tokenize(seq)])[0]
        assert out.shape == (len(seq), dim) and (out.sum(1) == 1).all()


def test_registry_names_cover_the_issue():
    from biofuse.pipeline.encoders import ENCODERS

    names = {n for n, _ in ENCODERS}
    for name in ["esm2_t6_8M", "esm2_t12_35M", "esm2_t30_150M", "esm2_t33_650M", "esm2_t36_3B",
                 "nt_v2_50m", "nt_v2_100m", "nt_v2_250m", "nt_v2_500m", "nt_v1_500m_human",
                 "nt_v1_2500m_multi", "rnafm", "unirep64", "unirep256", "unirep1900", "onehot"]:
        assert name in names


def test_fingerprint_records_the_window_overlap_actually_used(esm2_dir):
    """An overlap beyond the context is clamped; the fingerprint says what was used, so two
    spellings of the same computation share one store."""
    used = build_encoder(request(esm2_dir, window_overlap=10_000)).fingerprint()
    context = build_encoder(request(esm2_dir)).context
    clamped = build_encoder(request(esm2_dir, window_overlap=context - 1)).fingerprint()
    assert used.id == clamped.id and used.long_policy.endswith(f":{context - 1}")


@pytest.mark.parametrize("modality", ["rna", "dna"])
def test_codon_onehot_gives_every_codon_its_own_feature_on_the_protein_grid(modality):
    from itertools import product

    from biofuse.pipeline.data import dogma

    enc = build_encoder(request("onehot_codon", modality))
    bases = "ACGU" if modality == "rna" else "ACGT"
    codons = ["".join(c) for c in product(bases, repeat=3)]
    ids = enc.tokenize("".join(codons))
    assert sorted(ids) == list(range(64))  # 64 distinct codons, 64 distinct features
    (emb,) = enc.forward([ids])
    assert emb.shape == (64, 65) and (emb.sum(1) == 1).all()
    for seq in ["AUGGCUAA", "AUGNCU", "AU", "AUGGCUUAA"]:  # one token per codon, partials too
        s = seq if modality == "rna" else seq.replace("U", "T")
        assert len(enc.tokenize(s)) == dogma.n_codons(len(seq)) == len(dogma.translate(seq))
    assert enc.tokenize("AUGNCUAA" if modality == "rna" else "ATGNCTAA")[1:] == [64, 64]
    other = build_encoder(request("onehot", modality)).fingerprint()
    assert enc.fingerprint().id != other.id and enc.fingerprint().nt_per_token == 3
