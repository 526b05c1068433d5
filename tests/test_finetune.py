"""`biofuse finetune` on tiny random ESM-2, NT-v2 and RNA-FM models saved to a temp dir: what
trains (LoRA: exactly the adapters and the head), learning a planted signal, the saved encoder
(reloads, same embeddings, own fingerprint, usable by extract and fit), predict, resume after
Ctrl-C, and the errors a user meets."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import biofuse  # noqa: E402
from biofuse.cli import main  # noqa: E402
from biofuse.pipeline.encoders import EncoderRequest, build_encoder  # noqa: E402
from biofuse.pipeline.encoders.esm import _canonical_key  # noqa: E402
from biofuse.pipeline.encoders.windows import stitch  # noqa: E402
from biofuse.pipeline.finetune.model import Tokens  # noqa: E402
from tests.helpers.tiny_models import save_tiny_esm2, save_tiny_nt_v2, save_tiny_rnafm  # noqa: E402

AA = list("ACDEFGHIKLMNPQRSTVWY")
#: fast, exact settings for tests: fp32, small head
FAST = {"dtype": "fp32", "head_options": {"channels": 16}}


def planted_proteins(path, n=160, seed=0):
    """Proteins of 20-90 residues (longer than the tiny models' 64-token context, so some are
    windowed); the label is the fraction of W and C plus a little noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        p = "".join(rng.choice(AA, int(rng.integers(20, 90))))
        rows.append({"id": f"r{i}", "prot": p,
                     "label": (p.count("W") + p.count("C")) / len(p) + rng.normal(0, 0.01)})
    pl.DataFrame(rows).write_csv(path)
    return path


def planted_mrna(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        s = "".join(rng.choice(list("ACGU"), int(rng.integers(30, 60))))
        rows.append({"id": f"r{i}", "sequence": s, "label": s.count("G") / len(s)})
    pl.DataFrame(rows).write_csv(path)
    return path


def prot_ds(table):
    return biofuse.load_dataset(table, protein_col="prot")


@pytest.fixture(scope="module")
def esm_dir(tmp_path_factory):
    return save_tiny_esm2(tmp_path_factory.mktemp("esm2"), dim=32)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return planted_proteins(tmp_path_factory.mktemp("data") / "prot.csv")


@pytest.fixture(scope="module")
def lora_run(esm_dir, table, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lora"
    ds = biofuse.load_dataset(table, protein_col="prot")
    return biofuse.finetune(ds, out=out, modality="protein", model=str(esm_dir), method="lora",
                            lora_rank=4, epochs=6, **FAST)


def lora_param_count(n_layers: int, dim: int, inter: int, rank: int) -> int:
    """Adapters on q, k, v, attention output (dim -> dim), intermediate (dim -> inter) and
    output (inter -> dim) of every layer: rank x (in + out) each."""
    per_layer = 4 * rank * (dim + dim) + rank * (dim + inter) + rank * (inter + dim)
    return n_layers * per_layer


def head_param_count(dim: int) -> int:
    from biofuse.heads import HEADS

    head = HEADS["textcnn"](dim, 1, HEADS["textcnn"].Options(channels=16))
    return sum(p.numel() for p in head.parameters())


def test_lora_trains_exactly_the_adapters_and_the_head(lora_run, esm_dir):
    want = lora_param_count(2, 32, 64, 4) + head_param_count(32)
    assert lora_run.metrics["parameters"]["trainable"] == want
    trainable = {n for n, p in lora_run.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)

    # the saved encoder: untouched tensors bit-identical to the base; adapted ones equal to the
    # base plus the saved adapter's update B @ A * alpha / rank
    base = {_canonical_key(k): v for k, v in load_file(str(esm_dir / "model.safetensors")).items()}
    tuned = load_file(str(lora_run.encoder_dir / "model.safetensors"))
    adapter = load_file(str(lora_run.run_dir / "adapter" / "adapter_model.safetensors"))
    scale = 8.0 / 4  # default alpha = 2 x rank
    adapted = 0
    for name, value in tuned.items():
        a_key = next((k for k in adapter if k.endswith(name.removesuffix(".weight")
                                                         + ".lora_A.weight")), None)
        if a_key is None:
            assert torch.equal(value, base[name]), name
            continue
        b = adapter[a_key.replace("lora_A", "lora_B")]
        torch.testing.assert_close(value, base[name] + b @ adapter[a_key] * scale)
        assert not torch.equal(value, base[name]), f"{name} did not train"
        adapted += 1
    assert adapted == 2 * 6


def test_lora_learns_a_planted_signal(lora_run):
    log = pl.read_csv(lora_run.run_dir / "train_log.csv")
    assert log["train_loss"][-1] < 0.7 * log["train_loss"][0]
    assert lora_run.metrics["val"]["spearman"] > 0.5
    assert lora_run.metrics["test"]["spearman"] > 0.5
    config = json.loads((lora_run.run_dir / "config.json").read_text())
    assert config["status"] == "complete" and config["kind"] == "finetune"
    assert not (lora_run.run_dir / "checkpoint.pt").exists()  # finished: nothing to resume


def test_full_finetuning_trains_every_weight(esm_dir, table, tmp_path):
    res = biofuse.finetune(prot_ds(table), out=tmp_path / "full", modality="protein",
                           model=str(esm_dir), method="full", epochs=2, **FAST)
    counts = res.metrics["parameters"]
    assert counts["trainable"] == counts["total"]
    base = {_canonical_key(k): v for k, v in load_file(str(esm_dir / "model.safetensors")).items()}
    tuned = load_file(str(res.encoder_dir / "model.safetensors"))
    changed = [k for k in tuned if not torch.equal(tuned[k], base[k])]
    assert len(changed) > 0.8 * len(tuned)
    assert not (res.run_dir / "adapter").exists()


def _reload_matches(result, modality: str, sequences: list[str]):
    """The saved encoder reproduces the training-time model's per-token states, and its
    fingerprint differs from the base model's."""
    reloaded = build_encoder(EncoderRequest(model=str(result.encoder_dir), modality=modality))
    tokens = Tokens.of(reloaded, sequences, "window", 64, "test")
    with torch.no_grad():
        trained, mask = result.model.hidden_states(tokens, np.arange(len(sequences)))
    for i, units in enumerate(tokens.units):  # the extractor's rule: windows, then stitched
        emb = stitch(reloaded.forward(units), tokens.spans[i], int(tokens.lengths[i]))
        np.testing.assert_allclose(emb, trained[i, :int(mask[i].sum())].numpy(), atol=1e-4)
    return reloaded.fingerprint().id


@pytest.mark.parametrize("arch", ["esm2", "nt_v2", "rnafm"])
def test_each_architecture_finetunes_and_its_encoder_reloads(arch, tmp_path):
    if arch == "rnafm":
        pytest.importorskip("multimolecule")
    model_dir = {"esm2": save_tiny_esm2, "nt_v2": save_tiny_nt_v2,
                 "rnafm": save_tiny_rnafm}[arch](tmp_path / arch)
    if arch == "esm2":
        table, modality, spec = planted_proteins(tmp_path / "d.csv", n=40), "protein", \
            {"protein_col": "prot"}
    else:
        table, modality, spec = planted_mrna(tmp_path / "d.csv"), ("dna" if arch == "nt_v2"
                                                                   else "rna"), {}
    ds = biofuse.load_dataset(table, **spec)
    res = biofuse.finetune(ds, out=tmp_path / "run", modality=modality, model=str(model_dir),
                           lora_rank=2, epochs=2, **FAST)
    assert res.metrics["parameters"]["trainable"] < res.metrics["parameters"]["total"]
    column = {"protein": "protein", "dna": "dna", "rna": "mrna"}[modality]
    new_id = _reload_matches(res, modality, ds.frame[column].to_list()[:5])
    base = build_encoder(EncoderRequest(model=str(model_dir), modality=modality))
    assert new_id != base.fingerprint().id


def test_extract_then_fit_on_the_finetuned_encoder(lora_run, table, tmp_path):
    cache = tmp_path / "cache"
    runner = CliRunner()
    res = runner.invoke(main, ["extract", str(table), "--protein-col", "prot", "--modality",
                               "protein", "--model", str(lora_run.encoder_dir), "--cache",
                               str(cache), "--dtype", "fp32"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["fit", str(table), "--protein-col", "prot", "--fusion", "none",
                               "--modalities", "protein", "--encoder",
                               f"protein={lora_run.encoder_dir}", "--cache", str(cache),
                               "--out", str(tmp_path / "fit"), "--epochs", "3", "--json"])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "fit" / "config.json").read_text())
    fingerprint = config["encoders"]["protein"]["fingerprint"]
    assert fingerprint["model_id"] == str(lora_run.encoder_dir.resolve())


def test_predict_on_a_finetune_run_reproduces_its_predictions(lora_run, table, tmp_path):
    res = CliRunner().invoke(main, ["predict", str(lora_run.run_dir), str(table),
                                    "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    got = pl.read_csv(tmp_path / "p.csv")
    saved = pl.read_parquet(lora_run.run_dir / "predictions.parquet")
    np.testing.assert_allclose(got["pred_label"].to_numpy(), saved["pred_label"].to_numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_model_and_the_same_command_resumes(esm_dir, table, tmp_path):
    def interrupt_after_epoch_2(line: str) -> None:
        if line.startswith("epoch 2/4:"):
            raise KeyboardInterrupt

    table = prot_ds(table)
    options = dict(modality="protein", model=str(esm_dir), lora_rank=4,
                   epochs=4, patience=10, **FAST)
    first = biofuse.finetune(table, out=tmp_path / "run", echo=interrupt_after_epoch_2, **options)
    assert first.interrupted and first.metrics["test"] == {}  # test untouched
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["status"] == "interrupted"
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert (tmp_path / "run" / "encoder" / "model.safetensors").is_file()  # best so far

    lines = []
    resumed = biofuse.finetune(table, out=tmp_path / "run", echo=lines.append, **options)
    assert any("resuming from the checkpoint after epoch 2" in s for s in lines)
    assert resumed.metrics["resumed_from_epoch"] == 2 and not resumed.interrupted
    straight = biofuse.finetune(table, out=tmp_path / "straight", **options)
    assert resumed.metrics["val"] == straight.metrics["val"]
    assert resumed.metrics["test"] == straight.metrics["test"]
    log = pl.read_csv(tmp_path / "run" / "train_log.csv")
    assert log["epoch"].to_list() == [1, 2, 3, 4]


def test_gradient_checkpointing_changes_memory_not_results(esm_dir, table, tmp_path):
    table = prot_ds(table)
    options = dict(modality="protein", model=str(esm_dir), lora_rank=4,
                   epochs=1, lora_dropout=0.0, **FAST)
    plain = biofuse.finetune(table, out=tmp_path / "a", **options)
    ckpt = biofuse.finetune(table, out=tmp_path / "b", checkpointing=True, **options)
    assert ckpt.metrics["val"]["spearman"] == pytest.approx(plain.metrics["val"]["spearman"],
                                                            abs=1e-4)


def test_micro_batches_accumulate_to_the_same_step(esm_dir, table, tmp_path):
    """A tiny token budget cuts each step into many micro-batches; the accumulated gradient is
    the full batch's, so training matches a budget that fits the whole step."""
    table = prot_ds(table)
    options = dict(modality="protein", model=str(esm_dir), method="full",
                   epochs=1, batch_size=8, **FAST)
    big = biofuse.finetune(table, out=tmp_path / "a", batch_tokens=100000, **options)
    small = biofuse.finetune(table, out=tmp_path / "b", batch_tokens=64, **options)
    assert small.metrics["val"]["spearman"] == pytest.approx(big.metrics["val"]["spearman"],
                                                             abs=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--method", "qlora"], "'qlora' is not one of 'lora', 'full'"),
    (["--model", "onehot"], "onehot is not an encoder biofuse can finetune"),
    (["--lora-rank", "0"], "--lora-rank 0 is out of range"),
    (["--lora-rank", "-3"], "--lora-rank -3 is out of range"),
    (["--backbone-lr", "0"], "--backbone-lr 0.0 is out of range"),
    (["--modality", "dna", "--model", "esm2_t6_8M"], "embeds protein, not dna"),
    (["--channels", "0"], "--channels 0 is out of range"),
])
def test_bad_options_get_one_paragraph(args, message, esm_dir, table, tmp_path):
    base = ["finetune", str(table), "--protein-col", "prot", "--out", str(tmp_path / "run")]
    if "--modality" not in args:
        base += ["--modality", "protein"]
    if "--model" not in args:
        base += ["--model", str(esm_dir)]
    res = CliRunner().invoke(main, base + args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_of_other_options_is_not_resumed(esm_dir, table, tmp_path):
    table = prot_ds(table)
    options = dict(modality="protein", model=str(esm_dir), epochs=2, **FAST)

    def interrupt_after_epoch_1(line: str) -> None:
        if line.startswith("epoch 1/2:"):
            raise KeyboardInterrupt

    biofuse.finetune(table, out=tmp_path / "run", lora_rank=4, echo=interrupt_after_epoch_1,
                     **options)
    lines = []
    res = biofuse.finetune(table, out=tmp_path / "run", lora_rank=2, echo=lines.append, **options)
    assert any("other options or data; starting over" in s for s in lines)
    assert res.metrics["resumed_from_epoch"] == 0 and res.metrics["epochs"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["absurd epoch", "foreign weights", "not a dict",
                                    "no callbacks"])
def test_a_checkpoint_with_the_wrong_content_starts_over(esm_dir, table, tmp_path, damage):
    """The right key (same options and data) but content that does not fit: the docs promise
    "starts over", never a resume "after epoch 1000000000" that reports complete."""
    import torch

    table = prot_ds(table)
    options = dict(modality="protein", model=str(esm_dir), epochs=2, lora_rank=4, **FAST)

    def interrupt_after_epoch_1(line: str) -> None:
        if line.startswith("epoch 1/2:"):
            raise KeyboardInterrupt

    biofuse.finetune(table, out=tmp_path / "run", echo=interrupt_after_epoch_1, **options)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    if damage == "absurd epoch":
        state["epoch"] = 1_000_000_000
    elif damage == "foreign weights":
        state["model"] = {"head.out.weight": torch.zeros(3, 3)}
    elif damage == "not a dict":
        state = [state["key"]]
    else:
        state["callbacks"] = []
    torch.save(state, path)
    lines = []
    res = biofuse.finetune(table, out=tmp_path / "run", echo=lines.append, **options)
    assert any("starting over" in s for s in lines), lines
    assert res.metrics["resumed_from_epoch"] == 0 and res.metrics["epochs"] == 2
    assert not res.interrupted and res.metrics["test"]


def test_progress_within_an_epoch_says_how_fast_and_how_long():
    from biofuse.pipeline.train.trainer import StepLog, StepProgress

    lines = []
    progress = StepProgress(lines.append, every=0)
    progress.on_step_end(None, StepLog(epoch=1, step=3, steps=10, examples=96, tokens=9600,
                                       loss=0.5, seconds=12.0))
    assert lines == ["epoch 1: step 3/10, 96 rows, 800 tokens/s, train loss 0.5000, 28 s left "
                     "in the epoch"]


def _finetune_toml(tmp_path, esm_dir, table, finetune_lines):
    path = tmp_path / "exp.toml"
    path.write_text("\n".join([
        "seeds = [0]", 'cache = "cache"',
        "[datasets.prot]", f'path = "{table}"', 'protein_col = "prot"',
        "[encoders]", f'protein = "{esm_dir}"',
        "[extract]", 'dtype = "fp32"',
        "[[fit]]", 'fusion = "none"', 'modalities = ["protein"]', "epochs = 3",
        "textcnn = { channels = 16 }",
        "[[finetune]]", *finetune_lines]) + "\n")
    return path


@pytest.mark.slow
def test_an_experiment_grid_runs_probing_lora_and_full_and_reports_them(esm_dir, table,
                                                                       tmp_path):
    from biofuse.pipeline.experiment import load_experiment

    path = _finetune_toml(tmp_path, esm_dir, table, [
        'modality = "protein"', f'model = "{esm_dir}"', 'method = ["lora", "full"]',
        "lora_rank = [2, 4]", "epochs = 2", 'dtype = "fp32"', "textcnn = { channels = 16 }"])
    exp = load_experiment(path)
    kinds = sorted(t.method for t in exp.tasks)
    # full ignores the rank axis: one full run, two LoRA runs, one frozen probe
    assert kinds == ["finetune-full", "finetune-lora", "finetune-lora", "none"]
    # in process (--workers 1), a finetune's epoch lines reach the user as they are printed
    res = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out"),
                                    "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "epoch 2/2" in res.output
    results = pl.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(results["fusion"].to_list()) == ["finetune-full", "finetune-lora",
                                                   "finetune-lora", "none"]
    assert results["test_mean"].null_count() == 0
    runs = sorted(p.name for p in (tmp_path / "out" / "runs" / "prot").iterdir())
    assert sum(name.startswith("finetune-lora-textcnn-s0-") for name in runs) == 2
    again = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out")])
    assert "fits: 0 to run, 4 already finished" in again.output, again.output

    res = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "--out",
                                    str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report" / "report.md").read_text()
    assert "probing vs finetuning" in page
    for label in ("probing (frozen)", "LoRA", "full finetuning"):
        assert f"| {esm_dir.name} | {label} |" in page


def test_a_finetune_grid_of_a_non_transformer_is_a_problem_of_the_file(esm_dir, table,
                                                                       tmp_path):
    from biofuse.pipeline.experiment import ExperimentError, load_experiment

    path = _finetune_toml(tmp_path, esm_dir, table, [
        'modality = "protein"', 'model = "onehot"', "lora_rnak = 4", "lora_rank = 0"])
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    text = "\n".join(info.value.problems)
    assert "'lora_rnak' (did you mean 'lora_rank'?)" in text
    assert "--lora-rank 0 is out of range" in text


def test_long_sequences_are_windowed_or_truncated_as_asked(esm_dir):
    enc = build_encoder(EncoderRequest(model=str(esm_dir), modality="protein"))
    seqs = ["M" * 30, "A" * 150]  # the tiny model's context is 64 tokens
    windowed = Tokens.of(enc, seqs, "window", 16, "t")
    assert (windowed.windowed, windowed.truncated) == (1, 0)
    assert windowed.lengths.tolist() == [30, 150]
    assert len(windowed.units[1]) == 3 and all(len(u) <= 64 for u in windowed.units[1])
    truncated = Tokens.of(enc, seqs, "truncate", 16, "t")
    assert (truncated.windowed, truncated.truncated) == (0, 1)
    assert truncated.lengths.tolist() == [30, 64] and len(truncated.units[1]) == 1
    from biofuse.errors import DataError

    with pytest.raises(DataError, match="1 of 2 rows of t have no protein"):
        Tokens.of(enc, ["MA", None], "window", 16, "t")


def test_a_finetuned_protein_encoder_fuses_with_frozen_dna_and_rna(esm_dir, tmp_path):
    """The issue's end-to-end use: finetune on the proteins of a CDS table, cache the finetuned
    encoder's embeddings beside one-hot DNA and RNA, and fit MIL over the three."""
    from biofuse.examples import make_cds_example

    table = tmp_path / "cds.csv"
    make_cds_example(n=60, n_codons=20, seed=0).write_csv(table)
    ds = biofuse.load_dataset(table, label_cols=("expression",))
    tuned = biofuse.finetune(ds, out=tmp_path / "ft", modality="protein", model=str(esm_dir),
                             lora_rank=2, epochs=1, **FAST)
    cache = tmp_path / "cache"
    biofuse.extract(ds, modality="protein", model=str(tuned.encoder_dir), cache=cache,
                    progress=False, dtype="fp32")
    for m in ("dna", "rna"):
        biofuse.extract(ds, modality=m, model="onehot", cache=cache, progress=False)
    fit = biofuse.fit(ds, fusion="mil", cache=cache, out=tmp_path / "mil", epochs=2,
                      entropy_weights=(0.0,),
                      encoders={"dna": "onehot", "rna": "onehot",
                                "protein": str(tuned.encoder_dir)})
    assert fit.metrics["val"]["spearman"] is not None
    config = json.loads((tmp_path / "mil" / "config.json").read_text())
    assert config["encoders"]["protein"]["fingerprint"]["model_id"] == \
        str(tuned.encoder_dir.resolve())


@pytest.mark.slow
def test_a_finetune_table_with_a_distribution_is_a_search(esm_dir, table, tmp_path):
    pytest.importorskip("optuna")
    path = _finetune_toml(tmp_path, esm_dir, table, [
        'modality = "protein"', f'model = "{esm_dir}"', 'method = "lora"', "lora_rank = 2",
        "epochs = 2", 'dtype = "fp32"', "lr = { log_uniform = [1e-4, 1e-2] }",
        "search = { trials = 2, startup_trials = 1 }"])
    res = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "best trial" in res.output
    results = pl.read_csv(tmp_path / "out" / "results.csv")
    tuned = results.filter(pl.col("tuned").is_not_null())
    assert tuned["fusion"].to_list() == ["finetune-lora"] and tuned["test_mean"].null_count() == 0
    assert "lr=" in tuned["options"][0]
    trials = list((tmp_path / "out" / "search" / "prot").glob("*/trial-*/metrics.json"))
    assert len(trials) == 2
    assert all(json.loads(t.read_text())["test"] == {} for t in trials)
