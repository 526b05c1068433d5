"""Where a fit's time goes: one training epoch of every fusion on the three CodonBERT tables,
with the results page's encoders (DNA one-hot, RNA codon one-hot, protein one-hot) and its
settings (TextCNN head, batches of 32 rows capped at 16,384 padded positions, MIL at dim 128).

For each fusion x table x dtype (fp32, bf16 autocast) x torch threads (1, 2): seconds per
epoch (every training batch of a real epoch: forward, backward, optimizer step), the FLOPs of
that epoch counted from the model (torch's FlopCounterMode: forward and backward, matmuls and
convolutions), the achieved FLOP/s and its share of the machine's matmul peak measured in the
same run (bench/peak_matmul.py's method), and the peak resident memory. With --profile, a torch
profile (top operators) of the slowest configuration.

    python bench/fit_epoch.py --cache CACHE --out bench/results/fit_epoch.json
    python bench/fit_epoch.py --table bench/results/fit_epoch.json   # docs/fit.md's table

CACHE must hold the tables' one-hot embeddings (`biofuse run docs/examples/baselines.toml`
extracts them; so does results_onehot.toml). Reads ../shared/data; writes nothing else.
Epochs longer than --budget seconds are timed on a sample of their batches (every
length bucket of the epoch in proportion) and scaled to the whole epoch; the JSON says which.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peak_matmul import peak  # noqa: E402
from biofuse.fusion import FUSIONS  # noqa: E402
from biofuse.fusion.model import FusionModel, ModelConfig  # noqa: E402
from biofuse.modality import Modality  # noqa: E402
from biofuse.options import from_dict  # noqa: E402
from biofuse.pipeline.data import DataSpec, load_dataset  # noqa: E402
from biofuse.pipeline.encoders import autocast  # noqa: E402
from biofuse.pipeline.train.fit import length_batches  # noqa: E402
from biofuse.pipeline.train.inputs import load_inputs  # noqa: E402
from biofuse.pipeline.train.targets import make_targets  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TABLES = {
    "cov_vac": {"path": DATA / "cov_vac_degradation" / "CoV_Vaccine_Degradation.csv",
                "sequence_col": "Sequence", "label_cols": ["Value"], "split_col": "Split"},
    "mrfp": {"path": DATA / "mrfp_expression" / "mRFP_Expression.csv",
             "sequence_col": "Sequence", "label_cols": ["Value"], "split_col": "Split"},
    "mlos": {"path": DATA / "mlos" / "MLOS.csv", "sequence_col": "CDS", "label_cols": ["Value"]},
}
ENCODERS = {Modality.DNA: "onehot", Modality.RNA: "onehot_codon", Modality.PROTEIN: "onehot"}
OPTIONS = {"mil": {"dim": 128, "entropy_weight": 0.0}}
#: biofuse 0.6's defaults, measured beside today's in the same run: 256-wide attention and
#: projections, attention dropout 0.1, nucleotide one-hot DNA one token per nucleotide in the
#: unaligned methods
BEFORE = {"xattn@0.6": ("xattn", {"dim": 256, "dropout": 0.1}),
          "isoformer@0.6": ("isoformer", {"dim": 256, "dropout": 0.1,
                                          "nucleotide_tokens": True}),
          "seqconcat@0.6": ("seqconcat", {"dim": 256, "nucleotide_tokens": True}),
          # BioLangFusion's attention dropout, which keeps PyTorch off its fused CPU kernel
          "xattn@dropout0.1": ("xattn", {"dropout": 0.1}),
          "isoformer@dropout0.1": ("isoformer", {"dropout": 0.1})}


def method(name: str) -> tuple[str, dict]:
    """A fusion name, one of BEFORE's, or ``fusion@option=value[+option=value]``
    (``isoformer@heads=2``): the registered fusion and its options."""
    if name in BEFORE:
        return BEFORE[name]
    fusion, _, given = name.partition("@")
    options = dict(OPTIONS.get(fusion, {}))
    for item in filter(None, given.split("+")):
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)  # numbers, true / false
        except ValueError:
            options[key] = value
    return fusion, options


def epoch(name: str, ds, inputs, dtype: str, budget: float, count: bool = True,
          flops_per_epoch: float | None = None) -> dict:
    """Time one training epoch (or a proportional sample of it) and count its FLOPs (unless
    ``count`` is False: the counter's dispatch would swamp a profile), or take
    ``flops_per_epoch`` as counted for the same model and batches in another dtype / thread
    count (the same for all of them)."""
    fusion, options = method(name)
    fusion_cls = FUSIONS[fusion]
    mods = ((Modality.PROTEIN,) if fusion == "none" else tuple(ENCODERS))
    targets = make_targets(ds)
    y = targets.encode(ds.labels())
    train = np.flatnonzero(ds.frame["split"].to_numpy() == "train")
    lengths = inputs.lengths(fusion_cls.aligned)
    batches = length_batches(train, lengths, 32, np.random.default_rng(0), 16384)
    cfg = ModelConfig(tuple(map(str, mods)), {str(m): inputs.tables[m].dim for m in mods},
                      {str(m): inputs.tables[m].nt_per_token for m in mods}, fusion, "textcnn",
                      targets.n_outputs,
                      dict(from_dict(fusion_cls.Options, options).__dict__))
    torch.manual_seed(0)
    model = FusionModel(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=fusion_cls.lr)
    sub = {m: t for m, t in inputs.tables.items() if m in mods}

    def step(rows: np.ndarray) -> None:
        feats, masks, present, grid = inputs.batch(rows)
        feats = {str(m): v for m, v in feats.items() if m in sub}
        masks = {str(m): v for m, v in masks.items() if m in sub}
        present = {str(m): v for m, v in present.items() if m in sub}
        opt.zero_grad()
        with autocast(dtype):
            pred, fused = model(feats, masks, present, grid)
        loss = targets.loss(pred.float(), y[torch.from_numpy(rows)])
        loss.backward()
        opt.step()

    model.train()
    step(batches[0])  # warm-up: allocations, kernels chosen
    order = sorted(range(len(batches)), key=lambda i: lengths[batches[i]].max())
    timed, spent = [], 0.0
    for k, i in enumerate(order[::max(1, len(order) // 8)] + order):  # a spread first, then all
        if i in timed:
            continue
        t = time.perf_counter()
        step(batches[i])
        spent += time.perf_counter() - t
        timed.append(i)
        if spent > budget and k >= 8:
            break
    share = len(timed) / len(batches)
    if flops_per_epoch is None:
        flops = 0
        for i in timed if count else ():
            counter = FlopCounterMode(display=False)
            # torch's counter does not see the fused CPU attention kernel: count its maths
            # through the unfused path (the same FLOPs)
            with counter, sdpa_kernel(SDPBackend.MATH):
                step(batches[i])
            flops += counter.get_total_flops()
        flops_per_epoch = flops / share
    return {"batches": len(batches), "timed_batches": len(timed),
            "seconds_per_epoch": spent / share, "flops_per_epoch": flops_per_epoch,
            "achieved_tflops": flops_per_epoch / (spent / share) / 1e12, "sampled": share < 1,
            "tokens_per_row": float(lengths[train].mean())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--table", type=Path, help="print the Markdown table of a results JSON")
    ap.add_argument("--tables", default="cov_vac,mrfp,mlos")
    ap.add_argument("--fusions", default=",".join(sorted(FUSIONS)),
                    help=f"comma-separated; also {', '.join(BEFORE)} (0.6's defaults), "
                         "or FUSION@OPTION=VALUE[+OPTION=VALUE] (isoformer@heads=2)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds of timed steps per configuration before sampling")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    if args.cache is None:
        ap.error("--cache is required to measure")
    result = {"machine": {"cpu_bf16": " avx512_bf16" in Path("/proc/cpuinfo").read_text()
                          or " amx_bf16" in Path("/proc/cpuinfo").read_text()},
              "peak_tflops": {}, "runs": []}
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        result["peak_tflops"][threads] = {
            "fp32": peak(torch.float32) / 1e12, "bf16": peak(torch.bfloat16) / 1e12}
    for table in args.tables.split(","):
        spec = TABLES[table]
        ds = load_dataset(DataSpec(**{**spec, "path": str(spec["path"])}))
        for fusion in args.fusions.split(","):
            aligned = FUSIONS[method(fusion)[0]].aligned
            mods = {Modality.PROTEIN: "onehot"} if fusion == "none" else ENCODERS
            inputs = load_inputs(ds, mods, args.cache, aligned=aligned,
                                 extract_hint=lambda m, e: "biofuse run docs/examples/"
                                                           "baselines.toml")
            counted = None  # FLOPs per epoch: the same in every dtype and thread count
            for threads in map(int, args.threads.split(",")):
                torch.set_num_threads(threads)
                for dtype in args.dtypes.split(","):
                    r = epoch(fusion, ds, inputs, dtype, args.budget, flops_per_epoch=counted)
                    counted = r["flops_per_epoch"]
                    r.update(table=table, fusion=fusion, dtype=dtype, threads=threads,
                             peak_share=r["achieved_tflops"]
                             / result["peak_tflops"][threads][dtype],
                             max_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                             / 1e6)
                    result["runs"].append(r)
                    print(json.dumps(r), flush=True)
    if args.profile:
        slow = max(result["runs"], key=lambda r: r["seconds_per_epoch"])
        result["profile"] = profile(slow, args.cache)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


def markdown(result: dict) -> str:
    """Per table and fusion: seconds per epoch in each dtype x threads, the ratio to concat's
    epoch in the same setting, GFLOP per epoch and the share of the matmul peak."""
    runs = result["runs"]
    settings = sorted({(r["dtype"], r["threads"]) for r in runs}, key=lambda k: (k[1], k[0] != "fp32"))
    head = ["table", "fusion", "GFLOP / epoch"] + [
        f"{d}, {t} thr: s / epoch (x concat, % peak)" for d, t in settings]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * 2 + " ---: |" * (len(head) - 2)]
    for table in dict.fromkeys(r["table"] for r in runs):
        mine = [r for r in runs if r["table"] == table]
        for fusion in dict.fromkeys(r["fusion"] for r in mine):
            cells = []
            for dtype, threads in settings:
                r = next((r for r in mine if (r["fusion"], r["dtype"], r["threads"])
                          == (fusion, dtype, threads)), None)
                base = next((c for c in mine if (c["fusion"], c["dtype"], c["threads"])
                             == ("concat", dtype, threads)), None)
                cells.append("—" if r is None else
                             f"{r['seconds_per_epoch']:.2f} "
                             f"({r['seconds_per_epoch'] / base['seconds_per_epoch']:.1f}x, "
                             f"{100 * r['peak_share']:.0f}%)" if base else
                             f"{r['seconds_per_epoch']:.2f}")
            flops = next(r["flops_per_epoch"] for r in mine if r["fusion"] == fusion)
            lines.append(f"| {table} | {fusion} | {flops / 1e9:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile(run: dict, cache: Path) -> dict:
    """Top operators (self CPU time) of a few training steps of ``run``'s configuration."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    spec = TABLES[run["table"]]
    ds = load_dataset(DataSpec(**{**spec, "path": str(spec["path"])}))
    mods = {Modality.PROTEIN: "onehot"} if run["fusion"] == "none" else ENCODERS
    inputs = load_inputs(ds, mods, cache, aligned=FUSIONS[method(run["fusion"])[0]].aligned,
                         extract_hint=lambda m, e: "")
    torch.set_num_threads(run["threads"])
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch(run["fusion"], ds, inputs, run["dtype"], budget=5.0, count=False)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return {"configuration": {k: run[k] for k in ("table", "fusion", "dtype", "threads")},
            "top_ops": [{"op": e.key, "self_share": e.self_cpu_time_total / total,
                         "calls": e.count} for e in rows]}


if __name__ == "__main__":
    main()
