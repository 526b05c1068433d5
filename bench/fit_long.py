"""`biofuse fit` on long coding sequences: seconds per epoch, peak memory, where the time goes.

A synthetic table shaped like a transcriptome-wide expression set: ROWS coding sequences whose
codon lengths are log-normal (median ~470, p95 ~1,500, capped at 5,600), split 70/15/15, embedded
with the one-hot DNA/RNA/protein encoders, fused with `mil` (one entropy weight) and a TextCNN
head. Every configuration trains one epoch in its own process (so peak memory is its own):

  fp32             the defaults: float32, batches of 32 rows
  fp32+budget      float32, batches also capped at --batch-tokens padded codons
  bf16             --dtype bf16 (autocast: matmuls and convolutions in bfloat16)
  bf16+budget      both

  before           with --before REV: the fp32 defaults run by biofuse as of commit REV (a git
                   worktree, its own cache), side by side in the same run

Time per stage (gathering batches from the cache, forward, backward, optimizer step) is measured
over the whole epoch; the top operators by self CPU time come from torch.profiler over a sample
of batches spread across the length range (configurations without a budget).

    python bench/fit_long.py --rows 7100 --before 2b56832 --out bench/results/fit_long.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("BIOFUSE_TREE", str(ROOT)))  # --before runs another checkout

CONFIGS = {"fp32": ("fp32", None), "fp32+budget": ("fp32", "budget"),
           "bf16": ("bf16", None), "bf16+budget": ("bf16", "budget")}


def make_table(path: Path, rows: int, seed: int = 0) -> dict:
    from biofuse.pipeline.data import dogma

    rng = np.random.default_rng(seed)
    sense = sorted(c for c, aa in dogma.genetic_code(1).codons.items()
                   if "N" not in c and aa != "*")
    lengths = np.clip(rng.lognormal(np.log(470), 0.705, rows), 25, 5600).astype(int)
    lines = ["id,sequence,label,split"]
    splits = rng.choice(["train", "val", "test"], rows, p=[0.7, 0.15, 0.15])
    for i, n in enumerate(lengths):
        codons = rng.choice(sense, n - 2)
        cds = "AUG" + "".join(codons) + "UAA"
        gc = (cds.count("G") + cds.count("C")) / len(cds)
        label = 5 * gc + 0.1 * np.log(n) + rng.normal(0, 0.1)
        lines.append(f"r{i},{cds},{label:.5f},{splits[i]}")
    path.write_text("\n".join(lines) + "\n")
    return {"rows": rows, "train_rows": int((splits == "train").sum()),
            "codons_median": float(np.median(lengths)),
            "codons_p95": float(np.percentile(lengths, 95)), "codons_max": int(lengths.max()),
            "codons_total": int(lengths.sum())}


def run_config(table: Path, cache: Path, precision: str, budget: int | None,
               profile: bool) -> dict:
    """One epoch of mil + TextCNN in this process; stage times, peak RSS."""
    import torch

    from biofuse.fusion.model import FusionModel, ModelConfig
    from biofuse.pipeline.data import DataSpec, load_dataset

    torch.manual_seed(0)
    ds = load_dataset(DataSpec(path=str(table)))
    t = time.perf_counter()
    inputs, cfg, lengths, length_batches, autocast = _model_inputs(ds, cache, ModelConfig)
    load_s = time.perf_counter() - t
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    train = np.flatnonzero(ds.frame["split"].to_numpy() == "train")
    y = torch.from_numpy(ds.labels()[:, 0].astype(np.float32))
    model = FusionModel(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = (length_batches(train, lengths, 32, np.random.default_rng(0), budget) if budget
               else length_batches(train, lengths, 32, np.random.default_rng(0)))
    stages = {"gather": 0.0, "forward": 0.0, "backward": 0.0, "step": 0.0}
    model.train()
    start = time.perf_counter()
    for rows in batches:
        t0 = time.perf_counter()
        x = inputs.batch(rows)
        t1 = time.perf_counter()
        with autocast(precision):
            pred, fused = model(*x)
        loss = ((pred.float()[:, 0] - y[torch.from_numpy(rows)]) ** 2).mean()
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        for k, a, b in (("gather", t0, t1), ("forward", t1, t2), ("backward", t2, t3),
                        ("step", t3, t4)):
            stages[k] += b - a
    epoch_s = time.perf_counter() - start
    out = {"precision": precision, "batch_tokens": budget, "batches": len(batches),
           "epoch_s": epoch_s, "stages_s": stages, "load_cache_s": load_s,
           "padded_codons": int(sum(len(b) * lengths[b].max() for b in batches)),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_after_load_mb": rss_loaded, "threads": torch.get_num_threads()}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        order = sorted(batches, key=lambda b: lengths[b].max())
        sample = order[:: max(1, len(order) // 12)]
        with prof(activities=[ProfilerActivity.CPU]) as p:
            for rows in sample:
                with autocast(precision):
                    pred, _ = model(*inputs.batch(rows))
                loss = ((pred.float()[:, 0] - y[torch.from_numpy(rows)]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        events = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        out["profile_top_ops"] = [{"op": e.key, "self_share": e.self_cpu_time_total / total}
                                  for e in events[:10]]
    return out


def _model_inputs(ds, cache, ModelConfig):
    """Inputs, model config, row lengths, the batcher and the autocast context, through this
    tree's API or (for --before) the API biofuse had before the library rework."""
    import contextlib

    try:
        from biofuse.modality import ALL
        from biofuse.pipeline.train.fit import length_batches
        from biofuse.pipeline.train.inputs import autocast, load_inputs
    except ImportError:  # biofuse before the library API: fit.load_tensors / _forward
        from biofuse.pipeline import fit as old  # the layout of that time

        mods = ("dna", "rna", "protein")
        t = old.load_tensors(ds, old.FitConfig(fusion="mil", encoders={m: "onehot" for m in mods}),
                             cache, True)
        cfg = ModelConfig(mods, {m: t.tables[m].dim for m in mods},
                          {m: t.tables[m].nt_per_token for m in mods}, "mil", "textcnn", 1)

        class Inputs:
            def batch(self, rows):
                import torch

                r = torch.from_numpy(rows)
                feats, masks, present = {}, {}, {}
                for m, table in t.tables.items():
                    feats[m], masks[m], present[m] = table.batch(r)
                return feats, masks, present, t.grid[r]

        return (Inputs(), cfg, t.grid.numpy(), old.length_batches,
                lambda precision: contextlib.nullcontext())
    inputs = load_inputs(ds, {m: "onehot" for m in ALL}, cache, aligned=True,
                         extract_hint=lambda m, e: "")
    cfg = ModelConfig(tuple(map(str, ALL)), {str(m): inputs.tables[m].dim for m in ALL},
                      {str(m): inputs.tables[m].nt_per_token for m in ALL}, "mil", "textcnn", 1)
    return inputs, cfg, inputs.lengths(True), length_batches, autocast


def _child(table: Path, cache: Path, precision: str, budget: str, profile: bool,
           tree: Path | None = None) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["BIOFUSE_TREE"] = str(tree)
    proc = subprocess.run([sys.executable, __file__, "--child", str(table), str(cache), precision,
                           budget, "1" if profile else "0"], capture_output=True, text=True,
                          check=True, cwd=tree or ROOT, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=7100)
    ap.add_argument("--budget", type=int, default=16384, help="padded codons per batch")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--before", help="a git revision of biofuse to measure side by side (fp32)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        table, cache, precision, budget, profile = args.child
        res = run_config(Path(table), Path(cache), precision,
                         None if budget == "none" else int(budget), profile == "1")
        print(json.dumps(res))
        return
    from biofuse import api

    work = Path(tempfile.mkdtemp())
    try:
        table = work / "long.csv"
        result = {"table": make_table(table, args.rows)}
        t = time.perf_counter()
        api.extract(table, modality="all", model="onehot", cache=work / "cache", progress=False)
        result["extract_s"] = time.perf_counter() - t
        result["configs"] = {}
        names = args.configs.split(",")
        if args.before:
            tree = work / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before],
                           cwd=ROOT, check=True, capture_output=True)
            env = {**os.environ, "PYTHONPATH": str(tree)}
            subprocess.run([sys.executable, "-m", "biofuse.cli", "extract", str(table),
                            "--modality", "all", "--model", "onehot", "--cache",
                            str(work / "cache-before")], cwd=tree, env=env, check=True,
                           capture_output=True)
            result["before_revision"] = args.before
            names = ["before", *names]
        for name in names:
            if name == "before":
                result["configs"][name] = _child(table, work / "cache-before", "fp32", "none",
                                                 True, work / "before")
            else:
                precision, budget = CONFIGS[name]
                result["configs"][name] = _child(table, work / "cache", precision,
                                                 str(args.budget) if budget else "none",
                                                 budget is None)
            c = result["configs"][name]
            print(f"{name:12s} {c['epoch_s']:7.1f} s/epoch  peak {c['peak_rss_mb']:7.0f} MB  "
                  f"{c['batches']} batches", flush=True)
        for ref in ("before", "fp32"):
            base = result["configs"].get(ref, {}).get("epoch_s")
            if base:
                result[f"speedup_vs_{ref}"] = {k: base / v["epoch_s"]
                                               for k, v in result["configs"].items()}
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
    finally:
        if args.before:
            subprocess.run(["git", "worktree", "remove", "--force", str(work / "before")],
                           cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
