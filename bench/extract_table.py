"""Render bench/results/extract*.json as the markdown tables in docs/extract.md."""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
rows, peaks = [], None
peak_file = root / "peak.json"  # measured on a quiet machine by bench/peak_matmul.py
if peak_file.exists():
    peaks = json.loads(peak_file.read_text())["peak_tflops"]
for path in sorted(root.glob("extract*.json")):
    d = json.loads(path.read_text())
    if "peak_tflops" not in d:  # extract_profile.json has its own table
        continue
    peaks = peaks or d["peak_tflops"]
    rows += d["rows"]
for r in rows:  # model-FLOPs utilisation against the peak in use
    for d in ("fp32", "bf16"):
        r[d]["mfu"] = r[d]["e2e_tflops"] / peaks[d]
threads = json.loads((root / "extract.json").read_text())["threads"]
print(f"Peak matmul measured on this machine ({threads} threads): "
      f"fp32 {peaks['fp32']:.2f} TFLOP/s, bf16 {peaks['bf16']:.2f} TFLOP/s.\n")
print("| model | workload | fp32 e2e tok/s | bf16 e2e tok/s | e2e / bare fp32, bf16 | bf16 / fp32 | "
      "naive fp32 tok/s | e2e bf16 / naive | e2e fp32 / naive | MFU fp32, bf16 | bf16 min cosine |")
print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |")
for r in rows:
    f, b = r["fp32"], r["bf16"]
    naive = r.get("naive_tokens_per_s")
    cells = [r["model"], f"mixed, {r['sequences']} seqs, {f['tokens']} tokens",
             f"{f['e2e_tokens_per_s']:,.0f}", f"{b['e2e_tokens_per_s']:,.0f}",
             f"{f['e2e_vs_bare']:.2f}, {b['e2e_vs_bare']:.2f}", f"{r['bf16_vs_fp32_e2e']:.2f}x",
             f"{naive:,.0f}" if naive else "-",
             f"{r['e2e_bf16_vs_naive']:.2f}x" if naive else "-",
             f"{r['e2e_fp32_vs_naive']:.2f}x" if naive else "-",
             f"{f['mfu']:.0%}, {b['mfu']:.0%}", f"{r['bf16_cosine_min']:.5f}"]
    print("| " + " | ".join(cells) + " |")
    p = r.get("peptides")
    if naive and p:
        pn = p["naive_fp32_tokens_per_s"]
        print(f"| {r['model']} | peptides only, {p['sequences']} seqs, {p['tokens']} tokens | "
              f"{p['e2e_fp32_tokens_per_s']:,.0f} | {p['e2e_bf16_tokens_per_s']:,.0f} | | | "
              f"{pn:,.0f} | {p['e2e_bf16_tokens_per_s'] / pn:.2f}x | "
              f"{p['e2e_fp32_tokens_per_s'] / pn:.2f}x | | |")
