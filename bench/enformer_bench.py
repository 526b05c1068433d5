"""Enformer on CPU: seconds per 196,608-bp window and peak memory, fp32 and bf16.

A random-init Enformer of the published size (dim 1,536, 11 transformer layers, 896 output bins
of 128 bp, both species heads; throughput does not depend on weight values) is saved to a temp
dir as model.safetensors and loaded through biofuse's own path (``build_encoder``). Each dtype
then runs in a fresh process (so its peak resident memory is its own): one warm-up window and
``--repeats`` timed windows, each a whole 114,688-bp output span (a gene of that length, or any
shorter one: every window costs one full 196,608-bp input). The two dtypes alternate in one run;
their ratio is the figure to quote, and bf16's cosine to fp32 says what it costs. The window's
operation count (PyTorch's FLOP counter) turns the times into a sustained rate, and lets a
reader estimate another device from its own rate.

    python bench/enformer_bench.py --out bench/results/enformer.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def save_model(path: Path) -> None:
    import torch
    from enformer_pytorch import Enformer
    from safetensors.torch import save_model

    torch.manual_seed(0)
    model = Enformer.from_hparams()  # the published size
    path.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(path / "config.json"))
    save_model(model, str(path / "model.safetensors"))
    print(f"saved a random Enformer ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M "
          "parameters)", file=sys.stderr)


def window_flops() -> float:
    """Floating-point operations of one window's forward (PyTorch's counter, on the meta
    device: no memory, no time), so a reader can divide by their device's sustained rate."""
    import torch
    from enformer_pytorch import Enformer
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = Enformer.from_hparams()
        x = torch.zeros(1, 196_608, 4)
    with FlopCounterMode(display=False) as counter:
        model(x, return_only_embeddings=True)
    return float(counter.get_total_flops())


def measure(model_dir: str, dtype: str, repeats: int, out: str) -> None:
    """In a fresh process: time ``repeats`` windows after one warm-up; write the result."""
    import torch

    from biofuse.pipeline.encoders import EncoderRequest, build_encoder

    enc = build_encoder(EncoderRequest(model=model_dir, modality="dna", dtype=dtype))
    t = time.perf_counter()
    enc.model  # noqa: B018 (load the weights)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), enc.context * enc.bin))
    ids = enc.tokenize(seq)
    first = enc.forward([ids])[0]  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        enc.forward([ids])
        times.append(time.perf_counter() - t)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    np.save(out + ".npy", first.astype(np.float32))
    Path(out).write_text(json.dumps({
        "dtype": dtype, "threads": torch.get_num_threads(), "load_s": load_s,
        "window_s": times, "median_s": float(np.median(times)), "peak_rss_gib": peak_gib,
        "tokens": len(first), "dim": int(first.shape[1])}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/enformer.json")
    ap.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure[0], args.measure[1], int(args.measure[2]), args.measure[3])
        return
    from biofuse.pipeline.encoders import cores

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "enformer"
        save_model(model_dir)
        results = {}
        for dtype in ("fp32", "bf16"):
            out = str(Path(tmp) / f"{dtype}.json")
            subprocess.run([sys.executable, __file__, "--measure", str(model_dir), dtype,
                            str(args.repeats), out], check=True, env=os.environ.copy())
            results[dtype] = json.loads(Path(out).read_text())
            results[dtype]["embedding"] = np.load(out + ".npy")
            print(f"{dtype}: {results[dtype]['median_s']:.1f} s per window, peak "
                  f"{results[dtype]['peak_rss_gib']:.1f} GiB", file=sys.stderr)
    a, b = results["fp32"].pop("embedding"), results["bf16"].pop("embedding")
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    fp32, bf16 = results["fp32"]["median_s"], results["bf16"]["median_s"]
    flops = window_flops()
    report = {"cpu": _cpu(), "cores": cores(), "results": results,
              "gflop_per_window": flops / 1e9,
              "gflops_per_s": {d: flops / 1e9 / results[d]["median_s"] for d in results},
              "bf16_speedup": fp32 / bf16, "bf16_min_cosine": float(cosine.min()),
              "hours_per_1000_genes": {"fp32": fp32 * 1000 / 3600, "bf16": bf16 * 1000 / 3600}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
