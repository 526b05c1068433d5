"""The machine's peak matmul rate (fp32, bf16) with PyTorch: the denominator of MFU.

    python bench/peak_matmul.py --out bench/results/peak.json
"""

import argparse
import json
import time
from pathlib import Path

import torch


def peak(dtype: torch.dtype, sizes: tuple[int, ...] = (512, 1024, 2048), seconds: float = 0.5,
         rounds: int = 3) -> float:
    """The best FLOP/s of square matmuls over ``sizes`` (the fastest size differs by CPU and
    thread count), each timed over ``rounds`` runs of about ``seconds``."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        t = time.perf_counter()
        a @ b
        reps = max(1, int(seconds / max(time.perf_counter() - t, 1e-6)))
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = {"threads": torch.get_num_threads(),
              "peak_tflops": {"fp32": peak(torch.float32) / 1e12,
                              "bf16": peak(torch.bfloat16) / 1e12}}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
