"""The options of `biofuse extract`: which encoder, how it runs, where the work goes."""

from __future__ import annotations

from dataclasses import dataclass

from biofuse.errors import ConfigError
from biofuse.modality import Modality
from biofuse.options import check, option
from biofuse.pipeline.encoders import (
    DTYPES,
    LONG_POLICIES,
    EncoderRequest,
    check_device,
    check_workers,
    default_batch_tokens,
    default_device,
    default_dtype,
)
from biofuse.pipeline.extract.distributed import check_scheduler

DEFAULT_BATCH_TOKENS = 1024  # the CPU default; see encoders.default_batch_tokens
#: commit finished embeddings at least this often, so an interrupted run keeps its work
DEFAULT_COMMIT_SECONDS = 30.0


@dataclass(frozen=True, kw_only=True)
class ExtractOptions:
    """How ``extract`` runs an encoder; every field is also a ``biofuse extract`` flag."""

    prefix = ""
    model: str | None = option(
        None, "Registered encoder name, model directory, or hub id. Default per modality: "
        + ", ".join(f"{m} {m.default_encoder}" for m in Modality) + ". `--model onehot` needs "
        "no weights.")
    layer: int = option(-1, "Layer to store (0 = embeddings, -1 = last).")
    dtype: str = option("auto", "Compute precision; auto = bf16 on CUDA and on CPUs with AMX or "
                        "AVX512-BF16, else fp32. Embeddings are stored as fp16.",
                        choices=("auto", *DTYPES))
    batch_tokens: int | None = option(
        None, "Token budget of one batch (padded length x sequences). Default: 1024 on CPU "
        "(fastest there), 16384 on CUDA.", min=1)
    long_policy: str = option(
        "window", "Sequences longer than the encoder's context: overlapping windows stitched "
        "back to full length, truncation, or dropping (counts are reported).", flag="--long",
        choices=LONG_POLICIES)
    window_overlap: int = option(64, "Tokens shared by consecutive windows (at most the "
                                 "context minus one is used).", min=0)
    device: str | None = option(None, "cpu, cuda, cuda:1 ... Default: cuda if available.")
    workers: int | None = option(None, "Start a local Dask cluster with N workers (one per GPU "
                                 "on CUDA; at most the machine's cores or GPUs).", min=1)
    scheduler: str | None = option(None, "Address of an existing Dask scheduler "
                                   "(tcp://HOST:PORT).")
    commit_every: float = option(30.0, "Seconds between cache commits: an interrupted run keeps "
                                 "all but the last few seconds of work.", above=0)

    def __post_init__(self) -> None:
        check(self)
        if self.workers and self.scheduler:
            raise ConfigError("--workers and --scheduler exclude each other.",
                              "Use --workers N for a local cluster, or --scheduler ADDRESS for "
                              "an existing one.")
        if self.device is not None:
            check_device(self.device)
        check_workers(self.workers, self.device or default_device())
        check_scheduler(self.scheduler)

    def request(self, modality: Modality) -> EncoderRequest:
        """The encoder request for ``modality``, with device, dtype defaults resolved."""
        device = self.device or default_device()
        dtype = default_dtype(device) if self.dtype == "auto" else self.dtype
        return EncoderRequest(model=self.model or modality.default_encoder, modality=modality,
                              layer=self.layer, dtype=dtype, long_policy=self.long_policy,
                              window_overlap=self.window_overlap, device=device)

    def resolved_batch_tokens(self) -> int:
        return self.batch_tokens or default_batch_tokens(self.device or default_device())

