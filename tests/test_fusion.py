"""Every registered fusion x head on tiny dims: shapes, masking invariance, save/load, seeded
reproducibility, absent modalities; alignment lengths for any sequence length."""

from __future__ import annotations

import io
import itertools

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from biofuse.fusion import FUSIONS  # noqa: E402
from biofuse.fusion.align import Aligner, Upsample6mer, codon_pool  # noqa: E402
from biofuse.fusion.base import codon_patches, shared_width  # noqa: E402
from biofuse.fusion.model import FusionModel, ModelConfig  # noqa: E402
from biofuse.heads import NETWORK_HEADS  # noqa: E402

DIMS = {"dna": 6, "rna": 5, "protein": 7}
NT = {"dna": 6, "rna": 1, "protein": 3}
TINY = {"mil": {"dim": 8, "attn_dim": 4}, "xattn": {"dim": 8, "heads": 2},
        "seqconcat": {"dim": 8}, "isoformer": {"dim": 8, "heads": 2}, "concat": {"dna_dim": 4},
        "none": {}, "perceiver": {"dim": 8, "heads": 2, "latents": 3, "depth": 1},
        "perceiver_xattn": {"dim": 8, "heads": 2, "latents": 3, "depth": 1},
        "cabstractor": {"dim": 8, "latents": 3, "depth": 1}}
HEAD_TINY = {"textcnn": {"channels": 4}, "lstm": {"hidden": 6}, "mlp": {"hidden": 5},
             "meanlinear": {}}
COMBOS = list(itertools.product(sorted(FUSIONS), NETWORK_HEADS))  # probes: test_baselines


def config(fusion, head, mods=("dna", "rna", "protein"), n_out=2):
    if fusion == "none":
        mods = ("protein",)
    return ModelConfig(tuple(mods), {m: DIMS[m] for m in mods}, {m: NT[m] for m in mods},
                       fusion, head, n_out, TINY[fusion], HEAD_TINY[head])


def make_batch(codons, mods, seed=0, pad=0):
    """Inputs for rows of ``codons`` codons, each modality at its own token resolution, padded
    by ``pad`` extra positions."""
    g = torch.Generator().manual_seed(seed)
    feats, masks, present = {}, {}, {}
    for m in mods:
        lens = [c * 3 if NT[m] == 1 else (c + 1) // 2 if NT[m] == 6 else c for c in codons]
        width = max(lens) + pad
        x = torch.randn(len(codons), width, DIMS[m], generator=g)
        mask = torch.arange(width)[None, :] < torch.tensor(lens)[:, None]
        feats[m], masks[m] = x * mask[..., None], mask
        present[m] = torch.ones(len(codons), dtype=torch.bool)
    return feats, masks, present, torch.tensor(codons)


@pytest.mark.parametrize("fusion,head", COMBOS)
def test_shapes_padding_invariance_and_round_trip(fusion, head):
    torch.manual_seed(0)
    cfg = config(fusion, head)
    model = FusionModel(cfg).eval()
    feats, masks, present, grid = make_batch([5, 9, 2], cfg.modalities)
    out, fused = model(feats, masks, present, grid)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    # extra padding (garbage in it) never changes an output
    pf, pm, pp, pg = make_batch([5, 9, 2], cfg.modalities, pad=7)
    for m in cfg.modalities:
        width = feats[m].shape[1]
        pf[m][:, :width] = feats[m]
        pf[m][:, width:] = 99.0
    out2, _ = model(pf, pm, pp, pg)
    torch.testing.assert_close(out, out2, atol=1e-5, rtol=1e-5)
    # a row does not depend on the other rows of its batch
    one = {m: feats[m][1:2] for m in feats}
    alone, _ = model(one, {m: masks[m][1:2] for m in masks}, {m: present[m][1:2] for m in present},
                     grid[1:2])
    torch.testing.assert_close(alone[0], out[1], atol=1e-5, rtol=1e-5)
    # save / load
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    again = FusionModel(ModelConfig.from_dict(cfg.to_dict())).eval()
    again.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(again(feats, masks, present, grid)[0], out)


@pytest.mark.parametrize("fusion", sorted(set(FUSIONS) - {"none"}))
def test_absent_modality(fusion):
    torch.manual_seed(0)
    model = FusionModel(config(fusion, "meanlinear")).eval()
    feats, masks, present, grid = make_batch([4, 6], ("dna", "rna", "protein"))
    present["protein"] = torch.tensor([True, False])  # row 2: a non-coding transcript
    out, fused = model(feats, masks, present, grid)
    assert torch.isfinite(out).all()
    feats["protein"][1] = 1e3  # whatever sits in an absent modality is ignored
    torch.testing.assert_close(model(feats, masks, present, grid)[0], out)
    if fusion == "mil":
        assert float(fused.weights["protein"][1].detach()) == 0.0


@pytest.mark.parametrize("fusion", ["mil", "xattn"])
def test_seeded_construction_is_reproducible(fusion):
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = FusionModel(config(fusion, "textcnn")).eval()
        outs.append(model(*make_batch([4, 5], ("dna", "rna", "protein")))[0])
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def test_mil_weights_sum_to_one_and_entropy_term():
    torch.manual_seed(0)
    cfg = config("mil", "mlp")
    cfg = ModelConfig(**{**cfg.__dict__, "fusion_options": {**cfg.fusion_options,
                                                            "entropy_weight": 0.1}})
    _, fused = FusionModel(cfg)(*make_batch([4, 5], cfg.modalities))
    total = sum(fused.weights.values())
    torch.testing.assert_close(total, torch.ones(2))
    assert fused.aux_loss is not None and float(fused.aux_loss.detach()) > 0
    assert 0.02 <= float(FusionModel(cfg).fusion.tau().detach()) <= 20


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=5))
def test_alignment_lengths_always_equal_the_grid(codons):
    aligner = Aligner(NT, DIMS)
    feats, masks, present, grid = make_batch(codons, ("dna", "rna", "protein"))
    out, grid_mask = aligner(feats, masks, grid)
    assert grid_mask.sum(1).tolist() == codons
    for m in out:
        assert out[m].shape[:2] == grid_mask.shape


def test_codon_pool_and_upsample():
    x = torch.arange(7, dtype=torch.float32).view(1, 7, 1)
    pooled, mask = codon_pool(x, torch.ones(1, 7, dtype=torch.bool))
    assert pooled[0, :, 0].tolist() == [1.0, 4.0, 6.0] and mask.tolist() == [[True] * 3]
    up = Upsample6mer(4)
    y, m = up(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
    assert y.shape == (2, 10, 4) and m.all()  # two codons per 6-mer


def test_codon_patches_stack_tokens_in_order_and_keep_the_mask():
    x = torch.arange(1, 8, dtype=torch.float32).view(1, 7, 1)
    mask = torch.tensor([[True] * 5 + [False] * 2])
    patches, m = codon_patches(x, mask, 3)
    assert patches[0].tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 0.0], [0.0, 0.0, 0.0]]
    assert m.tolist() == [[True, True, False]]


def test_the_shared_width_follows_the_inputs_unless_given():
    onehot = {"dna": 15, "rna": 65, "protein": 21}  # DNA's one-hot, 3 nucleotides per patch
    assert shared_width(None, onehot, 4) == 68 and shared_width(None, onehot, 8) == 72
    assert shared_width(None, {"protein": 1280, "rna": 640}, 8) == 256
    assert shared_width(None, {"protein": 1280}, 12) == 252  # a multiple of the heads
    assert shared_width(96, onehot, 8) == 96


def test_attention_heads_follow_the_width_unless_given():
    from biofuse.fusion.isoformer import IsoformerOptions
    from biofuse.fusion.xattn import XattnOptions

    def shape(options, dims):
        built = options.resolved(dims)
        return built.dim, built.heads

    onehot = {"dna": 15, "rna": 65, "protein": 21}
    # one-hot inputs: 2 heads of 33, not 4 of 17 (xattn) or 8 of 9 (isoformer)
    assert shape(XattnOptions(), onehot) == (66, 2) and shape(IsoformerOptions(), onehot) == (66, 2)
    # pretrained widths: the papers' own counts
    assert shape(XattnOptions(), {"protein": 1280}) == (256, 4)
    assert shape(IsoformerOptions(), {"protein": 1280, "dna": 3072}) == (256, 8)
    # given values are kept; a given width gets the most heads that divide it
    assert shape(IsoformerOptions(heads=8), onehot) == (72, 8)
    assert shape(IsoformerOptions(dim=100), onehot) == (100, 2)  # 3 heads would not divide 100
    assert shape(IsoformerOptions(dim=20), onehot) == (20, 1)


@pytest.mark.parametrize("fusion", ["xattn", "isoformer", "seqconcat", "cabstractor", "concat"])
def test_a_saved_model_rebuilds_the_same_after_its_width_defaults_change(fusion, monkeypatch):
    """The config a model is saved with records the widths and heads it was built with, not
    the rule that chose them: a later biofuse with another rule still loads its weights."""
    from dataclasses import replace

    from biofuse.fusion import base, cabstractor, concat, seqconcat

    widths = ("dim", "heads", "dna_dim")
    cfg = replace(config(fusion, "meanlinear"), fusion_options={
        k: v for k, v in TINY[fusion].items() if k not in widths})  # widths left to defaults
    model = FusionModel(cfg)
    saved = model.config.fusion_options
    assert all(saved[k] is not None for k in widths if k in saved)
    # another rule: heads of any width, and other default widths
    monkeypatch.setattr(base, "MIN_HEAD_WIDTH", 1)
    for module in (base, seqconcat, cabstractor):
        monkeypatch.setattr(module, "shared_width", lambda dim, dims, multiple=1: dim or 4 * multiple)
    monkeypatch.setattr(concat, "DNA_DIM", 3)
    rebuilt = FusionModel(ModelConfig.from_dict(model.config.to_dict()))
    rebuilt.load_state_dict(model.state_dict())  # same shapes
    assert rebuilt.config == model.config
    # the test can fail: the config without the widths now builds another model
    assert FusionModel(cfg).config.fusion_options != saved


@pytest.mark.parametrize("fusion", ["isoformer", "seqconcat"])
def test_unaligned_methods_see_codon_patches_unless_told_to_keep_nucleotides(fusion):
    cfg = config(fusion, "meanlinear")
    model = FusionModel(cfg)
    assert model.patch == {"rna": 3}  # NT: rna is 1 nucleotide per token here
    assert model.fusion.proj["rna"].in_features == 3 * DIMS["rna"]
    kept = FusionModel(ModelConfig(**{**cfg.__dict__, "fusion_options": {
        **cfg.fusion_options, "nucleotide_tokens": True}}))
    assert kept.patch == {} and kept.fusion.proj["rna"].in_features == DIMS["rna"]
    feats, masks, present, grid = make_batch([4, 6], cfg.modalities)
    _, fused = model(feats, masks, present, grid)
    _, fused_kept = kept(feats, masks, present, grid)
    # 4 and 6 codons: DNA (6-mers) 2 and 3 tokens, RNA 4 and 6 patches, protein 4 and 6
    assert fused.mask.sum(1).tolist() == [10, 15]
    assert fused_kept.mask.sum(1).tolist() == [18, 27]


@pytest.mark.parametrize("layer_norm", [False, True])
def test_mil_layer_norm_leaves_only_the_weights_to_turn_a_modality_down(layer_norm):
    """With --mil-layer-norm, shrinking a modality's projection does not shrink its features (so
    a modality is ignored through its attention weight, which then says so); BioLangFusion's
    original (the default) shrinks them."""
    from biofuse.fusion.mil import GatedAttentionMIL, MILOptions

    torch.manual_seed(0)
    mil = GatedAttentionMIL({"rna": 4, "protein": 4}, MILOptions(dim=6, layer_norm=layer_norm))
    feats = {m: torch.randn(2, 5, 4) for m in ("rna", "protein")}
    masks = {m: torch.ones(2, 5, dtype=torch.bool) for m in feats}
    present = {m: torch.ones(2, dtype=torch.bool) for m in feats}
    with torch.no_grad():
        before = mil(feats, masks, present)
        mil.proj["protein"].weight.mul_(1e-3)
        mil.proj["protein"].bias.zero_()
        after = mil(feats, masks, present)
    shrunk = after.x.abs().mean() < 0.75 * before.x.abs().mean()
    assert shrunk != layer_norm


@pytest.mark.parametrize("dim, heads, dropout", [(66, 2, 0.0), (64, 4, 0.0), (32, 2, 0.3)])
def test_attend_is_multihead_attention_without_its_copies(dim, heads, dropout):
    from biofuse.fusion.base import attend

    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
    q = torch.randn(3, 7, dim, requires_grad=True)
    kv = torch.randn(3, 11, dim, requires_grad=True)
    ignore = torch.zeros(3, 11, dtype=torch.bool)
    ignore[0, 5:] = True
    ignore[2, 1:] = True  # one attended position
    attn.eval()  # dropout off: the two must agree exactly in maths
    ref, _ = attn(q, kv, kv, key_padding_mask=ignore, need_weights=False)
    out = attend(attn, q, kv, ignore)
    torch.testing.assert_close(out, ref)
    wrt = [q, kv, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight]
    for a, b in zip(torch.autograd.grad(out.square().sum(), wrt),
                    torch.autograd.grad(ref.square().sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    attn.train()  # dropout on in training, as the module's own
    if dropout:
        assert not torch.equal(attend(attn, q, kv, ignore), out)
