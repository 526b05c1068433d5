"""The baselines: composition encoders (k-mer, codon usage, amino-acid and dipeptide
frequencies) and scikit-learn probes (ridge, logistic, gbm) on pooled embeddings: exact
features, fitted on the training rows only, saved without pickle, read back by predict, run in
grids and reported."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import biofuse
from biofuse.cli import main
from biofuse.errors import ConfigError
from biofuse.examples import make_cds_example
from biofuse.heads.probes import GBMOptions, GBMProbe, RidgeOptions, RidgeProbe
from biofuse.modality import Modality
from biofuse.pipeline.encoders import EncoderRequest, build_encoder


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def features(name: str, modality: str, seq: str) -> dict[str, float]:
    enc = build_encoder(EncoderRequest(model=name, modality=Modality.parse(modality)))
    (vec,) = enc.forward([enc.tokenize(enc.prepare(seq))])
    words = {i: w for w, i in enc._index.items()}
    return {words[i]: round(float(v), 6) for i, v in enumerate(vec[0]) if v}


def test_composition_encoders_count_exactly_what_they_say():
    third = round(1 / 3, 6)
    assert features("kmer2", "dna", "ACGTN") == {"AC": third, "CG": third,
                                                 "GT": third}  # 'TN' is not counted
    assert features("kmer1", "rna", "AAUG") == {"A": 0.5, "U": 0.25, "G": 0.25}
    assert features("codon_usage", "rna", "AUGAUGGCNUA") == {"AUG": 1.0}  # frame 0; GCN, UA no
    assert features("aa_composition", "protein", "MKKX*") == {"M": third,
                                                              "K": round(2 / 3, 6)}
    assert features("dipeptide", "protein", "MKKM") == {"MK": third, "KK": third, "KM": third}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The shipped example's kind of table (label = hydrophobic share + GC content + noise),
    with its composition features in a cache."""
    root = tmp_path_factory.mktemp("baselines")
    make_cds_example(n=300, n_codons=30).write_csv(root / "t.csv")
    for modality, model in (("rna", "kmer1"), ("rna", "kmer3"), ("protein", "aa_composition"),
                            ("protein", "onehot")):
        res = run("extract", root / "t.csv", "--modality", modality, "--model", model,
                  "--cache", root / "c", "--label-col", "expression")
        assert res.exit_code == 0, res.output
    return root


def fit(planted, out, *args):
    res = run("fit", planted / "t.csv", "--cache", planted / "c", "--out", out,
              "--label-col", "expression", *args)
    assert res.exit_code == 0, res.output
    return json.loads((out / "metrics.json").read_text())


def test_ridge_on_two_compositions_finds_the_planted_signal(planted, tmp_path):
    """GC content lives in the RNA's 1-mers, hydrophobicity in the amino-acid composition: each
    alone sees half, together they see it all (concat is what a probe does with several)."""
    rna = fit(planted, tmp_path / "rna", "--encoder", "rna=kmer1", "--head", "ridge")
    both = fit(planted, tmp_path / "both", "--encoder", "rna=kmer1", "--encoder",
               "protein=aa_composition", "--head", "ridge")
    config = json.loads((tmp_path / "both" / "config.json").read_text())
    assert config["fit"]["fusion"] == "concat" and config["fit"]["modalities"] == ["rna",
                                                                                    "protein"]
    assert both["test"]["spearman"] > 0.9 > rna["test"]["spearman"]
    assert both["regularisation"] and both["epochs"] is None


@pytest.mark.parametrize("head,extra", [("ridge", ["--ridge-tfidf"]),
                                        ("ridge", ["--ridge-pool", "meanmax"]),
                                        ("gbm", ["--gbm-max-iter", "40"])])
def test_predict_gives_what_fit_gave(planted, tmp_path, head, extra):
    fit(planted, tmp_path / "r", "--encoder", "rna=kmer3", "--encoder", "protein=onehot",
        "--head", head, *extra)
    res = run("predict", tmp_path / "r", planted / "t.csv", "--cache", planted / "c", "--out",
              tmp_path / "p.parquet")
    assert res.exit_code == 0, res.output
    fitted = pl.read_parquet(tmp_path / "r" / "predictions.parquet")
    again = pl.read_parquet(tmp_path / "p.parquet")
    assert np.allclose(fitted["pred_expression"].to_numpy(), again["pred_expression"].to_numpy(),
                       rtol=1e-5)


def test_logistic_on_classes(planted, tmp_path):
    table = pl.read_csv(planted / "t.csv")
    cut = table["expression"].median()
    table.with_columns(cls=pl.when(pl.col("expression") > cut).then(pl.lit("high"))
                       .otherwise(pl.lit("low"))).write_csv(tmp_path / "c.csv")
    res = run("fit", tmp_path / "c.csv", "--cache", planted / "c", "--out", tmp_path / "r",
              "--label-col", "cls", "--encoder", "rna=kmer1", "--encoder",
              "protein=aa_composition", "--head", "logistic")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    res = run("predict", tmp_path / "r", tmp_path / "c.csv", "--cache", planted / "c", "--out",
              tmp_path / "p.csv")
    assert res.exit_code == 0 and set(pl.read_csv(tmp_path / "p.csv")["pred"]) <= {"high", "low"}


def test_what_a_probe_learns_comes_from_the_training_rows_only():
    rng = np.random.default_rng(0)
    X = rng.random((60, 8))
    y = (X[:, 0] * 3 + rng.normal(0, 0.1, 60))[:, None]
    train = np.arange(40)
    a = RidgeProbe(1, RidgeOptions(tfidf=True)).fit(X[train], y[train], "regression", 0)
    X2 = X.copy()
    X2[40:] = rng.random((20, 8)) * 100  # other validation / test rows
    b = RidgeProbe(1, RidgeOptions(tfidf=True)).fit(X2[train], y[train], "regression", 0)
    for k, v in a.state().items():
        assert np.array_equal(v, b.state()[k]), k


def test_ridge_predictions_equal_scikit_learns_own_pipeline():
    """The saved arrays reproduce what scikit-learn's TF-IDF + scaler + RidgeCV predicts."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    rng = np.random.default_rng(1)
    X = rng.random((80, 16))
    y = X @ rng.normal(size=16) + rng.normal(0, 0.1, 80)
    options = RidgeOptions(tfidf=True)
    probe = RidgeProbe(1, options).fit(X[:60], y[:60, None], "regression", 0)
    dense = FunctionTransformer(lambda m: m.toarray(), accept_sparse=True)
    reference = make_pipeline(TfidfTransformer(), dense, StandardScaler(),
                              RidgeCV(alphas=list(options.alphas))).fit(X[:60], y[:60])
    assert np.allclose(probe.raw(X)[:, 0], reference.predict(X), rtol=1e-5, atol=1e-6)
    again = RidgeProbe.from_state(1, options, probe.state())
    assert np.array_equal(again.raw(X), probe.raw(X))


def test_a_saved_gbm_loads_only_the_types_it_saved():
    import skops.io

    rng = np.random.default_rng(2)
    X, y = rng.random((100, 4)), rng.random((100, 1))
    probe = GBMProbe(1, GBMOptions(max_iter=10)).fit(X, y, "regression", 0)
    again = GBMProbe.from_state(1, probe.options, probe.state())
    assert np.array_equal(again.raw(X), probe.raw(X))
    foreign = skops.io.dumps([probe.models[0], _NotOurs()])  # a type biofuse never saves
    with pytest.raises(ConfigError, match="does not load"):
        GBMProbe.from_state(1, probe.options, {"skops": np.frombuffer(foreign, np.uint8),
                                               "classification": np.array([False])})
    saved = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in probe.state().items()}
    assert all(isinstance(v, torch.Tensor) for v in saved.values())  # model.pt: tensors only


class _NotOurs:
    """A class a saved probe never holds."""


def test_probes_are_refused_where_they_cannot_work(planted, tmp_path):
    res = run("fit", planted / "t.csv", "--cache", planted / "c", "--out", tmp_path / "r",
              "--label-col", "expression", "--encoder", "rna=kmer1", "--head", "ridge",
              "--fusion", "mil")
    assert res.exit_code == 2 and "nothing to fuse there" in res.output
    res = run("fit", planted / "t.csv", "--cache", planted / "c", "--out", tmp_path / "r",
              "--label-col", "expression", "--encoder", "rna=kmer1", "--encoder",
              "protein=onehot", "--fusion", "concat", "--modalities", "rna,protein")
    assert res.exit_code == 2 and "one vector per rna sequence" in res.output
    with pytest.raises(ConfigError, match="scikit-learn probe"):
        biofuse.finetune(biofuse.load_dataset(planted / "t.csv", label_cols=["expression"]),
                         out=tmp_path / "f", head="ridge")
    assert not (tmp_path / "r" / "model.pt").exists()


def test_a_grid_of_baselines_runs_and_is_reported(planted, tmp_path):
    (tmp_path / "exp.toml").write_text(
        f'cache = "{planted / "c"}"\nseeds = [0, 1]\n'
        f'[datasets.d]\npath = "{planted / "t.csv"}"\nlabel_cols = ["expression"]\n'
        '[encoders]\nrna = "kmer1"\nprotein = "aa_composition"\n'
        '[[fit]]\nname = "baselines"\nhead = ["ridge", "gbm"]\nmodalities = [["rna"], '
        '["rna", "protein"]]\nridge = { tfidf = [false, true] }\ngbm = { max_iter = 30 }\n')
    result = biofuse.run(tmp_path / "exp.toml", out=tmp_path / "out", workers=1,
                         progress=False)
    assert result.ok and result.ran == 12  # (2 ridge + 1 gbm) x 2 modality sets x 2 seeds
    table = result.results
    assert set(table["fusion"]) == {"none", "concat"} and set(table["head"]) == {"ridge", "gbm"}
    page = biofuse.report(tmp_path / "out", out=tmp_path / "rep")
    text = page.read_text()
    assert "No attribution view for a scikit-learn probe" in text or "ridge" in text


# ------------------------------------------------------------------------ seed ensembles

@pytest.fixture(scope="module")
def grid_with_seeds(planted, tmp_path_factory):
    """Baselines and a deep model over three seeds on the planted table."""
    root = tmp_path_factory.mktemp("ensembles")
    (root / "exp.toml").write_text(
        f'cache = "{planted / "c"}"\nseeds = [0, 1, 2]\n'
        f'[datasets.d]\npath = "{planted / "t.csv"}"\nlabel_cols = ["expression"]\n'
        '[encoders]\nrna = "kmer1"\nprotein = "aa_composition"\n'
        '[[fit]]\nname = "baselines"\nhead = ["ridge", "gbm"]\nmodalities = ["rna", "protein"]\n'
        'gbm = { max_iter = 40 }\n'
        '[[fit]]\nname = "deep"\nfusion = "none"\nmodalities = ["protein"]\nepochs = 3\n'
        'encoders = { protein = "onehot" }\n')
    result = biofuse.run(root / "exp.toml", out=root / "out", workers=1, progress=False)
    assert result.ok
    return root / "out", result


def test_results_tables_score_each_configurations_seed_ensemble(grid_with_seeds):
    out, result = grid_with_seeds
    table = result.results
    assert table["test_ensemble"].null_count() == 0
    gbm = table.filter(pl.col("head") == "gbm").row(0, named=True)
    # the ensemble is the seeds' averaged predictions, scored: recompute it by hand
    from scipy.stats import spearmanr

    runs = pl.read_parquet(out / "runs.parquet").filter(pl.col("config_id") == gbm["config_id"])
    preds = [pl.read_parquet(f"{d}/predictions.parquet").filter(pl.col("split") == "test")
             for d in runs["run_dir"].to_list()]
    mean = np.mean([p["pred_expression"].to_numpy() for p in preds], axis=0)
    assert gbm["test_ensemble"] == pytest.approx(
        spearmanr(preds[0]["y_expression"].to_numpy(), mean)[0], abs=1e-9)
    page = (out / "results.md").read_text()
    assert "test, ensemble" in page and "The deep model against the baseline" in page


def test_predict_with_an_experiment_folder_averages_the_chosen_seeds(grid_with_seeds, planted,
                                                                     tmp_path):
    out, result = grid_with_seeds
    res = run("predict", out, planted / "t.csv", "--out", tmp_path / "p.parquet")
    assert res.exit_code == 0, res.output
    assert "3 seed(s) averaged" in res.output
    chosen = result.results.filter(pl.col("chosen")).row(0, named=True)
    runs = pl.read_parquet(out / "runs.parquet").filter(pl.col("config_id") == chosen["config_id"])
    each = [pl.read_parquet(f"{d}/predictions.parquet")["pred_expression"].to_numpy()
            for d in runs["run_dir"].to_list()]
    got = pl.read_parquet(tmp_path / "p.parquet")["pred_expression"].to_numpy()
    assert np.allclose(got, np.mean(each, axis=0), rtol=1e-5)
    res = run("predict", out, planted / "t.csv", "--dataset", "other", "--out", tmp_path / "q.csv")
    assert res.exit_code == 2 and "holds results for d" in res.output
