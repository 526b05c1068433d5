"""Where and in what precision an encoder runs by default, and which devices exist."""

from __future__ import annotations

import os
import re
from pathlib import Path

from biofuse.errors import ConfigError


def default_device() -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> str:
    """bf16 where it is fast and accurate enough: CUDA, and CPUs with AMX or AVX512-BF16
    (cosine similarity to fp32 measured in docs/extract.md); fp32 elsewhere."""
    if device.startswith("cuda"):
        return "bf16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "fp32"
    return "bf16" if (" amx_bf16" in flags or " avx512_bf16" in flags) else "fp32"


def default_batch_tokens(device: str) -> int:
    """Token budget of a batch. On CPU, padded batches push attention off PyTorch's fused kernel,
    so small batches (short peptides still batch ~35 at a time) are fastest: 1024 measured best
    in bench/extract_bench.py. GPUs want large batches."""
    return 16384 if device.startswith("cuda") else 1024


def check_device(device: str) -> None:
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise ConfigError(f"--device {device!r} is not a device biofuse knows.",
                          "Use cpu, cuda, cuda:N or mps.")
    if device.startswith("cuda"):
        import torch

        n = torch.cuda.device_count()
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= n:
            raise ConfigError(f"--device {device}: this machine has {n} CUDA device(s).",
                              "Use --device cpu, or run on a machine with a GPU.")


def autocast(dtype: str, device: str = "cpu"):
    """The compute precision of a model's forward on ``device``: ``fp32``, or ``bf16`` autocast
    (matmuls and convolutions in bfloat16, reductions and the loss in float32; weights and the
    optimizer stay float32)."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                          enabled=dtype == "bf16")


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover — macOS, Windows
        return os.cpu_count() or 1


def check_workers(workers: int | None, device: str, flag: str = "--workers") -> None:
    """More local workers than the machine has cores (or, on CUDA, GPUs) only compete for them
    (and a typo such as 1000 would start a thousand processes): a ConfigError."""
    if workers is None:
        return
    if device.startswith("cuda"):
        import torch

        limit, what = torch.cuda.device_count(), "GPU(s)"
    else:
        limit, what = cores(), "CPU cores"
    if workers > limit:
        raise ConfigError(f"{flag} {workers} asks for more local workers than this machine has "
                          f"{what} ({limit}).", f"Use {flag} {limit} or fewer, or --scheduler "
                          "ADDRESS to run on an existing Dask cluster with more machines.")
