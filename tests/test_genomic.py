"""Enformer and Borzoi through their PyTorch ports, on tiny random models of the real
architectures saved to a temp dir and loaded through biofuse's own loading path."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

pytest.importorskip("torch")
pytest.importorskip("enformer_pytorch")

from click.testing import CliRunner  # noqa: E402

from biofuse.cli import main  # noqa: E402
from biofuse.pipeline.encoders import EncoderRequest, build_encoder  # noqa: E402
from biofuse.pipeline.encoders.hub import ModelError  # noqa: E402
from tests.helpers.tiny_models import save_tiny_borzoi, save_tiny_enformer, tiny_borzoi, tiny_enformer  # noqa: E402

RNG = np.random.default_rng(0)
DNA = ["".join(RNG.choice(list("ACGT"), n)) for n in (1000, 129, 128, 40)]


@pytest.fixture(scope="module")
def enformer_dir(tmp_path_factory):
    return save_tiny_enformer(tmp_path_factory.mktemp("enformer"))


def reference(model, seq: str, out_bins: int, flank_bins: int, bin_size: int, borzoi=False):
    """The port's own forward on the sequence placed where biofuse promises: bin-aligned in the
    middle of the output span, N (all-zero one-hot) everywhere else; the bins holding it."""
    import torch
    from enformer_pytorch import str_to_one_hot

    w = math.ceil(len(seq) / bin_size)
    at = (out_bins - w) // 2
    before = (flank_bins + at) * bin_size
    total = (out_bins + 2 * flank_bins) * bin_size
    x = str_to_one_hot("N" * before + seq + "N" * (total - before - len(seq)))[None]
    with torch.inference_mode():
        if borzoi:
            h = model.get_embs_after_crop(x.transpose(1, 2))
            out = model.final_joined_convs(h).transpose(1, 2)
        else:
            out = model(x, return_only_embeddings=True)
    return out[0, at:at + w].numpy()


@pytest.mark.parametrize("pickle_bin", [False, True], ids=["safetensors", "state-dict-bin"])
def test_enformer_matches_a_direct_port_forward(tmp_path, pickle_bin):
    path = save_tiny_enformer(tmp_path / "m", pickle_bin=pickle_bin)
    enc = build_encoder(EncoderRequest(model=str(path), modality="dna"))
    assert (enc.info.nt_per_token, enc.info.dim, enc.context) == (128, 96, 8)
    got = enc.forward([enc.tokenize(s) for s in DNA])
    model = tiny_enformer()
    for seq, ours in zip(DNA, got):
        want = reference(model, seq, 8, 4, 128)
        assert ours.shape == (math.ceil(len(seq) / 128), 96)
        np.testing.assert_allclose(ours, want, atol=1e-5)


def test_enformer_windows_stitch_and_its_fingerprint_is_its_own(enformer_dir, tmp_path):
    from biofuse.pipeline.encoders.windows import owned, windows

    enc = build_encoder(EncoderRequest(model=str(enformer_dir), modality="dna",
                                       window_overlap=2))
    fp = enc.fingerprint()
    assert fp.nt_per_token == 128 and fp.tokenizer["bin"] == 128
    assert fp.long_policy == "window:8:2"
    from tests.helpers.tiny_models import save_tiny_nt_v2

    nt = build_encoder(EncoderRequest(model=str(save_tiny_nt_v2(tmp_path / "nt")),
                                      modality="dna")).fingerprint()
    assert nt.id != fp.id and nt.nt_per_token == 6

    # a 2,500-bp sequence: 20 bins over windows of 8 overlapping by 2, through `extract`
    long = "".join(RNG.choice(list("ACGU"), 2500))
    table = tmp_path / "long.csv"
    pl.DataFrame({"id": ["a"], "sequence": [long], "label": [1.0]}).write_csv(table)
    import biofuse
    from biofuse.cache import EmbeddingCache, sequence_key

    [summary] = biofuse.extract(table, modality="dna", model=str(enformer_dir),
                                cache=tmp_path / "cache", window_overlap=2, dtype="fp32",
                                progress=False)
    assert summary.counts.windowed == 1
    [dna] = biofuse.load_dataset(table).frame["dna"].to_list()  # the mRNA as DNA (U -> T)
    assert len(dna) == 2500
    store = EmbeddingCache(tmp_path / "cache").store(fp)
    stored = store.load([sequence_key(dna)], dtype="float32").data
    assert stored.shape == (20, 96)
    ids = enc.tokenize(dna)
    spans = windows(len(ids), 8, 2)
    model = tiny_enformer()
    for (start, end), (a, b) in zip(spans, owned(spans, len(ids))):
        piece = dna[start * 128:end * 128]
        want = reference(model, piece, 8, 4, 128)[a - start:b - start]
        np.testing.assert_allclose(stored[a:b], want, atol=2e-3)  # fp16 storage


def test_a_pickled_checkpoint_is_refused(tmp_path):
    import torch

    path = save_tiny_enformer(tmp_path / "m")
    (path / "model.safetensors").unlink()
    torch.save(tiny_enformer(), path / "pytorch_model.bin")  # a whole pickled module
    with pytest.raises(ModelError, match="pickled Python objects, which biofuse never executes"):
        build_encoder(EncoderRequest(model=str(path), modality="dna")).forward([[0]])


@pytest.mark.parametrize("key, value, expected", [
    ("target_length", -3, "target_length = -3 is not a whole number"),
    ("input_length", "big", "input_length = 'big' is not a whole number"),
    ("heads", "x", "does not describe a complete enformer"),
    ("dim", 50, "do not fit the enformer in its config.json"),
])
def test_a_hostile_config_is_one_model_error(enformer_dir, tmp_path, key, value, expected):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(enformer_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ModelError, match=expected):
        enc = build_encoder(EncoderRequest(model=str(bad), modality="dna"))
        enc.forward([enc.tokenize("ACGT" * 40)])


def test_finetuning_enformer_is_refused_with_the_alternative(enformer_dir, tmp_path):
    table = tmp_path / "t.csv"
    pl.DataFrame({"id": ["a", "b"], "sequence": ["AUGGCC" * 30] * 2, "label": [1.0, 2.0]}
                 ).write_csv(table)
    res = CliRunner().invoke(main, ["finetune", str(table), "--modality", "dna", "--model",
                                    str(enformer_dir), "--method", "full", "--out",
                                    str(tmp_path / "ft")])
    assert res.exit_code != 0 and "not an encoder biofuse can finetune" in res.output
    assert "biofuse fit --fusion none" in res.output and "Traceback" not in res.output


def test_wrong_uses_are_clear_errors(enformer_dir, monkeypatch):
    with pytest.raises(ModelError, match="embeds DNA, not protein"):
        build_encoder(EncoderRequest(model=str(enformer_dir), modality="protein"))
    with pytest.raises(ModelError, match="last layer before its species heads"):
        build_encoder(EncoderRequest(model=str(enformer_dir), modality="dna", layer=3))
    config = json.loads((enformer_dir / "config.json").read_text())
    bad = enformer_dir.parent / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**config, "input_length": 1000}))
    with pytest.raises(ModelError, match="input_length 1000"):
        build_encoder(EncoderRequest(model=str(bad), modality="dna"))
    import importlib

    real = importlib.import_module

    def missing(name, *a, **k):
        if name == "enformer_pytorch":
            raise ImportError("No module named 'enformer_pytorch'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ModelError, match="pip install --no-deps enformer-pytorch"):
        build_encoder(EncoderRequest(model="enformer", modality="dna"))


def test_each_codon_takes_the_bin_that_holds_it():
    import torch

    from biofuse.fusion.align import Aligner

    x = torch.arange(3.0)[None, :, None].repeat(2, 1, 2)  # bins 0, 1, 2 with values 0, 1, 2
    mask = torch.tensor([[True, True, True], [True, False, False]])
    out, grid_mask = Aligner({"dna": 128}, {"dna": 2})({"dna": x}, {"dna": mask},
                                                       torch.tensor([120, 120]))
    codon = torch.arange(120)
    want = torch.div(codon * 3, 128, rounding_mode="floor").float()
    assert torch.equal(out["dna"][0, :, 0], want)  # codon 42 (nt 126) in bin 0, 43 in bin 1
    assert torch.equal(out["dna"][1, :, 0], torch.zeros(120))  # row 2 has bin 0 only
    assert torch.equal(out["dna"][1, :43, 1], torch.zeros(43))


@pytest.mark.slow
def test_the_cli_extracts_bins_and_every_isoformer_aggregation_trains_on_them(enformer_dir,
                                                                              tmp_path):
    rows = []
    for i in range(40):
        codons = int(RNG.integers(60, 140))
        rows.append({"id": f"g{i}", "sequence": "AUG" + "".join(
            RNG.choice(list("ACGU"), 3 * (codons - 2))) + "UAA", "label": float(RNG.normal())})
    table = tmp_path / "genes.csv"
    pl.DataFrame(rows).write_csv(table)
    cache = str(tmp_path / "cache")
    runner = CliRunner()
    res = runner.invoke(main, ["extract", str(table), "--modality", "dna", "--model",
                               str(enformer_dir), "--cache", cache])
    assert res.exit_code == 0, res.output
    for m in ("rna", "protein"):
        assert runner.invoke(main, ["extract", str(table), "--modality", m, "--model",
                                    "onehot", "--cache", cache]).exit_code == 0
    for fusion in ("isoformer", "perceiver_xattn", "perceiver", "cabstractor", "mil"):
        res = runner.invoke(main, [
            "fit", str(table), "--cache", cache, "--out", str(tmp_path / fusion), "--fusion",
            fusion, "--encoder", f"dna={enformer_dir}", "--encoder", "rna=onehot", "--encoder",
            "protein=onehot", "--epochs", "2", "--json"])
        assert res.exit_code == 0, (fusion, res.output)
        metrics = json.loads(res.stdout)
        assert "spearman" in metrics["val"], metrics
        config = json.loads((tmp_path / fusion / "config.json").read_text())
        assert config["model"]["nt_per_token"]["dna"] == 128


@pytest.mark.slow
def test_borzoi_matches_a_direct_port_forward(tmp_path):
    pytest.importorskip("borzoi_pytorch")
    path = save_tiny_borzoi(tmp_path / "b")
    enc = build_encoder(EncoderRequest(model=str(path), modality="dna"))
    assert (enc.info.nt_per_token, enc.info.dim, enc.context) == (32, 1920, 8)
    model = tiny_borzoi()
    for seq in ("ACGTTGCA" * 25, "ACG"):
        [ours] = enc.forward([enc.tokenize(seq)])
        want = reference(model, seq, 8, 8, 32, borzoi=True)
        assert ours.shape == (math.ceil(len(seq) / 32), 1920)
        np.testing.assert_allclose(ours, want, atol=1e-4)
