"""`biofuse report`: the page and figures from experiment folders and run directories."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import biofuse
from biofuse.cli import main
from biofuse.examples import make_cds_example
from biofuse.pipeline.report.attribution import attribute
from biofuse.pipeline.train.rundir import RunDir
from biofuse.references import load_references, reference_key


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A finished two-dataset grid: singles, concat, MIL with and without entropy."""
    root = tmp_path_factory.mktemp("exp")
    frame = make_cds_example(n=60, n_codons=10)
    frame.write_csv(root / "covvac.csv")
    (frame.with_columns(second=pl.col("expression") * -1 + 3)
     .write_csv(root / "multi.csv"))
    (root / "exp.toml").write_text("\n".join([
        "seeds = [0, 1]", 'cache = "cache"',
        "[datasets.cov_vac]", 'path = "covvac.csv"', 'label_cols = ["expression"]',
        'dna_col = "upstream"', 'split_from = "codonbert"',
        "[datasets.multi]", 'path = "multi.csv"', 'label_cols = ["expression", "second"]',
        "[encoders]", 'dna = "onehot"', 'rna = "onehot"', 'protein = "onehot"',
        "[[fit]]", 'fusion = "none"', 'modalities = ["rna", "protein"]', "epochs = 2",
        "[[fit]]", 'fusion = ["concat", "mil"]', "epochs = 2",
        "entropy_weights = [[0.0], [0.1]]", "mil = { dim = 8 }"]) + "\n")
    result = biofuse.run(root / "exp.toml", workers=1, progress=False)
    assert result.ok
    return root


def test_report_writes_every_view_and_names_every_run(experiment, tmp_path):
    r = CliRunner().invoke(main, ["report", str(experiment / "exp"), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "report.md").read_text()
    runs = pl.read_parquet(experiment / "exp" / "runs.parquet")
    assert runs.height == 2 * (2 + 1 + 2) * 2
    for run_dir in runs["run_dir"]:
        assert run_dir in page
    for name in ["cov_vac-comparison", "cov_vac-curves", "cov_vac-scatter", "cov_vac-attribution",
                 "mil-weights", "multi-per-target", "multi-attribution"]:
        png = tmp_path / f"{name}.png"
        assert png.stat().st_size > 1000, name
        assert f"({png.name})" in page
    # the chosen configuration's per-sample MIL weights exist for each dataset with MIL runs
    assert (tmp_path / "cov_vac-mil-per-sample.png").is_file()


def test_published_numbers_stand_beside_ours_with_the_split_marked(experiment, tmp_path):
    biofuse.report(experiment / "exp", out=tmp_path)
    page = (tmp_path / "report.md").read_text()
    section = page.split("## cov_vac")[1].split("## multi")[0]
    assert "| codonbert | TextCNN (codons) | 0.800 | yes |" in section  # split_from codonbert
    assert "| biolangfusion | MIL + entropy | 0.864 | no |" in section
    assert "No published spearman for 'multi'" in page
    assert "Li et al., CodonBERT" in page  # the source is cited


def test_mil_weights_with_and_without_entropy(experiment, tmp_path):
    biofuse.report(experiment / "exp", out=tmp_path)
    page = (tmp_path / "report.md").read_text()
    assert "| cov_vac | no entropy term |" in page and "| cov_vac | entropy term |" in page


def test_a_user_reference_file_is_matched_by_dataset_name(experiment, tmp_path):
    ref = tmp_path / "mine.csv"
    ref.write_text("source,method,dataset,metric,value\nlab,our old model,Multi,spearman,0.5\n")
    biofuse.report(experiment / "exp", out=tmp_path / "r", reference=str(ref))
    page = (tmp_path / "r" / "report.md").read_text()
    assert "| lab | our old model | 0.500 | no |" in page
    assert "codonbert" not in page.split("## Sources")[0].split("## multi")[0].split("## cov_vac")[0]


def test_bad_reference_and_bad_inputs_are_clean_errors(experiment, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("source,method,value\nx,y,1\n")
    for args, message in [(["--reference", str(bad)], "lacks the column(s) dataset, metric"),
                          (["--reference", "nature2031"], "neither a shipped reference")]:
        r = CliRunner().invoke(main, ["report", str(experiment / "exp"), "--out",
                                      str(tmp_path / "o"), *args])
        assert r.exit_code == 2 and message in r.output, r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["report", str(empty), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "neither an experiment folder" in r.output


def test_report_on_run_directories_of_fit(experiment, tmp_path):
    run_dirs = sorted((experiment / "exp" / "runs" / "cov_vac").iterdir())[:3]
    page = biofuse.report(run_dirs, out=tmp_path)
    text = page.read_text()
    assert all(str(d) in text for d in run_dirs)


def test_attribution_is_per_codon_on_the_grid(experiment):
    run_dir = next((experiment / "exp" / "runs" / "cov_vac").glob("mil-*"))
    saved = RunDir(run_dir).load()
    ds = biofuse.load_dataset(experiment / "covvac.csv", label_cols=("expression",),
                              dna_col="upstream")
    rows = np.array([0, 5])
    stores = {m: e["store"] for m, e in saved.config["encoders"].items()}
    att = attribute(saved.model, ds, rows, stores, experiment / "cache")
    assert att.aligned and set(att.values) == {"dna", "rna", "protein"}
    for m in att.values:
        assert [len(v) for v in att.values[m]] == [12, 12]  # AUG + 10 codons + stop
        assert all(np.isfinite(v).all() for v in att.values[m])
    assert any(np.abs(v).sum() > 0 for v in att.values["protein"])


def test_shipped_references_cover_the_papers_tables():
    refs = load_references()
    assert set(refs["source"]) == {"biolangfusion", "bridging", "codonbert", "isoformer"}
    cb = refs.filter((pl.col("source") == "codonbert") & (pl.col("key") == reference_key("CoV-Vac")))
    assert dict(zip(cb["method"], cb["value"]))["TextCNN (codons)"] == 0.80
    ecoli = refs.filter((pl.col("key") == "ecoli") & (pl.col("source") == "biolangfusion"))
    assert set(ecoli["metric"]) == {"accuracy"} and ecoli["value"].max() < 1
    assert refs.height == 13 * 5 + 14 * 6 + 7 * 7 + 6  # isoformer: Tables 8 (3) and 4 (3)


def _runs(configs):
    """A runs frame of finished fits: {(fusion, modalities): [(val, test), ...] per seed}."""
    from biofuse.pipeline.report.results import runs_frame

    rows = []
    for (fusion, modalities), seeds in configs.items():
        for seed, (val, test) in enumerate(seeds):
            rows.append({"dataset": "d", "config_id": f"{fusion}-{modalities}", "run_dir": "x",
                         "status": "complete" if val is not None else "failed",
                         "fusion": fusion, "head": "textcnn", "modalities": modalities,
                         "encoders": f"{modalities}=onehot", "options_json": "{}", "seed": seed,
                         "metric": "spearman", "val": val, "test": test})
    return runs_frame(rows)


def test_fusion_against_the_best_single_modality_is_judged_on_both_splits():
    from biofuse.pipeline.report.results import summarise
    from biofuse.pipeline.report.verdicts import fusion_vs_single

    singles = {("none", "rna"): [(0.80, 0.80), (0.82, 0.82)],  # sd 0.014
               ("none", "protein"): [(0.70, 0.90), (0.70, 0.90)]}  # best test, not chosen
    verdict = fusion_vs_single(summarise(_runs(
        {**singles, ("mil", "dna+rna+protein"): [(0.83, 0.80), (0.83, 0.81)]})))
    assert "**mil (" in verdict and "best single modality on validation, rna (" in verdict
    assert "validation at or above it (+0.020)" in verdict
    assert "test within one standard deviation (-0.005, sd 0.014)" in verdict
    verdict = fusion_vs_single(summarise(_runs(
        {**singles, ("concat", "dna+rna+protein"): [(0.75, 0.70), (0.77, 0.72)]})))
    assert verdict.count("below it by more than one standard deviation") == 2
    # a fusion with a failed seed is not a candidate; without any, there is nothing to judge
    assert fusion_vs_single(summarise(_runs(
        {**singles, ("mil", "dna+rna+protein"): [(0.9, 0.9), (None, None)]}))) is None
    assert fusion_vs_single(summarise(_runs(singles))) is None


def test_the_report_and_the_results_page_say_whether_fusion_won(experiment, tmp_path):
    biofuse.report(experiment / "exp", out=tmp_path)
    for page in ((tmp_path / "report.md").read_text(),
                 (experiment / "exp" / "results.md").read_text()):
        assert page.count("Fusion against the modalities alone") == 2  # one per dataset


def test_a_configuration_reads_the_same_whichever_biofuse_saved_its_model():
    """Configs written before 0.10 left the attention width and heads None; later ones record
    them as built. The results table resolves both, so one configuration is one row."""
    from biofuse.pipeline.report.results import _options

    def model(**fusion_options):
        return {"modalities": ["dna", "rna", "protein"], "dims": {"dna": 5, "rna": 65, "protein": 21},
                "nt_per_token": {"dna": 1, "rna": 3, "protein": 3}, "fusion": "xattn",
                "head": "textcnn", "n_outputs": 1, "fusion_options": fusion_options,
                "head_options": {}}

    fit = {"fusion": "xattn", "head": "textcnn", "lr": 1e-4}
    before = _options(fit, model(dim=None, heads=None, dropout=0.0))
    assert before == _options(fit, model(dim=66, heads=2, dropout=0.0))
    assert (before["xattn.dim"], before["xattn.heads"]) == (66, 2)
    assert _options(fit, model(dim=None, heads=4, dropout=0.0))["xattn.dim"] == 68  # 0.9's
