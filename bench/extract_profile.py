"""Where the forward's time goes, fp32 vs bf16: the ceiling on bf16's end-to-end gain.

Runs the bare forward of each random-init real-size model on the mixed workload of
bench/extract_bench.py (exactly the batches biofuse builds) under torch.profiler, and splits the
operator time into matmuls (addmm/mm/bmm/linear), attention (the fused SDPA kernel) and the rest
(GELU, layer norms, rotary, residual adds, copies). bf16 speeds up matmuls only; if attention and
the rest take the same time in both precisions, the best possible bf16/fp32 ratio of the whole
forward follows from the fp32 shares (Amdahl), and this script prints it next to the measured
ratio.

    python bench/extract_profile.py --out bench/results/extract_profile.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extract_bench import SIZES, loaded, run_bare, save_model, workload  # noqa: E402

from biofuse.pipeline.encoders import EncoderRequest  # noqa: E402
from biofuse.pipeline.extract.batching import token_budget_batches  # noqa: E402

MATMUL = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul")
ATTENTION = ("aten::_scaled_dot_product_flash_attention_for_cpu",
             "aten::_scaled_dot_product_attention_math", "aten::_softmax")


def split(model_dir: Path, modality: str, dtype: str, seqs: list[str], batch_tokens: int) -> dict:
    enc = loaded(EncoderRequest(model=str(model_dir), modality=modality, dtype=dtype))
    ids = [enc.tokenize(s) for s in seqs]
    batches = [[ids[i] for i in b] for b in
               token_budget_batches([len(x) for x in ids], batch_tokens, enc.n_specials)]
    run_bare(enc, batches[-3:])  # warm-up
    wall = min(run_bare(enc, batches) for _ in range(2))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_bare(enc, batches)
    parts = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for ev in prof.key_averages():
        us = ev.self_cpu_time_total
        key = ("matmul" if ev.key in MATMUL else "attention" if ev.key in ATTENTION else "other")
        parts[key] += us / 1e6
    total = sum(parts.values())
    return {"wall_s": wall, **{f"{k}_s": v for k, v in parts.items()},
            **{f"{k}_share": v / total for k, v in parts.items()}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="esm2_t6_8M,esm2_t12_35M,esm2_t30_150M,nt_v2_100m,rnafm")
    ap.add_argument("--short", type=int, default=150)
    ap.add_argument("--long", type=int, default=30)
    ap.add_argument("--batch-tokens", type=int, default=1024)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp())
    rows = []
    try:
        for name in args.models.split(","):
            family = SIZES[name][0]
            modality = {"esm": "protein", "nt": "dna", "rnafm": "rna"}[family]
            scale = {"esm2_t30_150M": 3, "rnafm": 3, "nt_v2_100m": 2}.get(name, 1)
            seqs = workload(modality, args.short // scale, args.long // scale)
            model_dir = save_model(name, work / name)
            row = {"model": name, "sequences": len(seqs)}
            for dtype in ("fp32", "bf16"):
                row[dtype] = split(model_dir, modality, dtype, seqs, args.batch_tokens)
            f, b = row["fp32"], row["bf16"]
            row["measured_bf16_vs_fp32"] = f["wall_s"] / b["wall_s"]
            row["matmul_bf16_vs_fp32"] = f["matmul_s"] / b["matmul_s"]
            row["attention_bf16_vs_fp32"] = f["attention_s"] / b["attention_s"]
            row["other_bf16_vs_fp32"] = f["other_s"] / b["other_s"]
            # if only the matmuls got faster (by the factor measured on them)
            row["ceiling_bf16_vs_fp32"] = 1 / (f["matmul_share"] / row["matmul_bf16_vs_fp32"]
                                               + f["attention_share"] + f["other_share"])
            print(f"{name}: fp32 shares matmul {f['matmul_share']:.0%}, attention "
                  f"{f['attention_share']:.0%}, other {f['other_share']:.0%}; bf16/fp32 speed: "
                  f"matmul {row['matmul_bf16_vs_fp32']:.2f}x, attention "
                  f"{row['attention_bf16_vs_fp32']:.2f}x, other {row['other_bf16_vs_fp32']:.2f}x, "
                  f"whole {row['measured_bf16_vs_fp32']:.2f}x", flush=True)
            rows.append(row)
            shutil.rmtree(model_dir, ignore_errors=True)
            if args.out:
                args.out.write_text(json.dumps({"threads": torch.get_num_threads(),
                                                "rows": rows}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
