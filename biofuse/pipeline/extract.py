"""`biofuse extract`: plan what is missing from the cache, batch it, embed it, store it.

The client plans (normalise, hash, ask the cache what is missing) and reports; the work itself,
``compute``, is the same in-process and on Dask workers: tokenize, window or truncate long
sequences, build token-budget batches, embed (halving a batch on out-of-memory), stitch windows,
and write parts to the cache, which commits them atomically.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from biofuse.cache import EmbeddingCache, EmbeddingStore, sequence_key
from biofuse.errors import BiofuseError, ConfigError
from biofuse.modality import Modality
from biofuse.options import check, option
from biofuse.pipeline.batching import stitch, token_budget_batches, windows
from biofuse.pipeline.encoders import (
    DTYPES,
    LONG_POLICIES,
    Encoder,
    EncoderRequest,
    build_encoder,
    default_batch_tokens,
    default_device,
    default_dtype,
    encoder_info,
)

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
                                 "on CUDA).", min=1, max=1024)
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
            _check_device(self.device)

    def request(self, modality: Modality) -> EncoderRequest:
        """The encoder request for ``modality``, with device, dtype defaults resolved."""
        device = self.device or default_device()
        dtype = default_dtype(device) if self.dtype == "auto" else self.dtype
        return EncoderRequest(model=self.model or modality.default_encoder, modality=modality,
                              layer=self.layer, dtype=dtype, long_policy=self.long_policy,
                              window_overlap=self.window_overlap, device=device)

    def resolved_batch_tokens(self) -> int:
        return self.batch_tokens or default_batch_tokens(self.device or default_device())


def _check_device(device: str) -> None:
    import re

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


class OutOfMemory(BiofuseError):
    """A single sequence does not fit in memory."""


@dataclass
class Counts:
    """What ``compute`` did; summed over workers."""

    computed: int = 0
    tokens: int = 0
    dropped_long: int = 0
    truncated: int = 0
    windowed: int = 0
    oom_splits: int = 0
    forward_seconds: float = 0.0

    def add(self, other: Counts) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class Summary:
    encoder: str
    modality: str
    fingerprint_id: str
    rows: int
    rows_without_modality: int
    unique: int
    cached: int
    counts: Counts = field(default_factory=Counts)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.counts.tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"tokens_per_s": self.tokens_per_s}

    def format(self) -> str:
        c = self.counts
        lines = [f"{self.modality} / {self.encoder} ({self.fingerprint_id}): "
                 f"{self.unique} distinct sequences, {self.cached} were cached, "
                 f"{c.computed} computed ({c.tokens} tokens) in {self.seconds:.1f} s, "
                 f"{self.tokens_per_s:,.0f} tokens/s"]
        if self.rows_without_modality:
            lines.append(f"  {self.rows_without_modality} rows have no {self.modality} sequence")
        for n, what in [(c.windowed, "long sequences embedded in overlapping windows"),
                        (c.truncated, "long sequences truncated to the encoder's context"),
                        (c.dropped_long, "long sequences dropped (--long drop)"),
                        (c.oom_splits, "batches split after running out of memory")]:
            if n:
                lines.append(f"  {n} {what}")
        if self.interrupted:
            lines.append("  interrupted: finished embeddings are saved; run the same command "
                         "again to compute the rest")
        return "\n".join(lines)


# ------------------------------------------------------------------------ the work

def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text \
        or "can't allocate memory" in text


def embed_with_fallback(encoder: Encoder, batch: list[list[int]], counts: Counts) -> list[np.ndarray]:
    """``encoder.forward``; on out-of-memory, halve the batch and retry, down to one sequence."""
    try:
        return encoder.forward(batch)
    except Exception as exc:
        if not is_oom(exc):
            raise
        _free_accelerator_memory()
        if len(batch) == 1:
            raise OutOfMemory(
                f"One sequence of {len(batch[0])} tokens does not fit in memory on "
                f"{encoder.request.device}.",
                "Use --long window with a smaller context, a smaller --dtype (bf16), or a "
                "device with more memory.") from exc
        counts.oom_splits += 1
        half = len(batch) // 2
        return (embed_with_fallback(encoder, batch[:half], counts)
                + embed_with_fallback(encoder, batch[half:], counts))


def _free_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def compute(encoder: Encoder, items: list[tuple[str, str]], store: EmbeddingStore,
            batch_tokens: int, on_batch: Callable[[int, int], None] | None = None,
            commit_seconds: float = DEFAULT_COMMIT_SECONDS) -> Counts:
    """Embed ``items`` (key, prepared sequence) and commit them to ``store``."""
    request = encoder.request
    context = encoder.context
    counts = Counts()
    units: list[tuple[int, int, list[int]]] = []  # (item, window number, ids)
    spans: dict[int, list[tuple[int, int]]] = {}
    lengths: dict[int, int] = {}
    for idx, (_, seq) in enumerate(items):
        ids = encoder.tokenize(seq)
        if len(ids) > context:
            if request.long_policy == "drop":
                counts.dropped_long += 1
                continue
            if request.long_policy == "truncate":
                ids = ids[:context]
                counts.truncated += 1
            else:
                counts.windowed += 1
        spans[idx] = windows(len(ids), context, min(request.window_overlap, context - 1))
        lengths[idx] = len(ids)
        units.extend((idx, k, ids[s:e]) for k, (s, e) in enumerate(spans[idx]))
    batches = token_budget_batches([len(u[2]) for u in units], batch_tokens,
                                   getattr(encoder, "n_specials", 0))
    pieces: dict[int, dict[int, np.ndarray]] = {}
    with store.writer(part_seconds=commit_seconds) as writer:
        for batch in batches:
            t = time.perf_counter()
            outs = embed_with_fallback(encoder, [units[j][2] for j in batch], counts)
            counts.forward_seconds += time.perf_counter() - t
            n_tokens, done = 0, 0
            for j, out in zip(batch, outs, strict=True):
                idx, k, ids = units[j]
                assert out.shape[0] == len(ids), "an encoder returned the wrong number of tokens"
                got = pieces.setdefault(idx, {})
                got[k] = out
                n_tokens += len(ids)
                if len(got) == len(spans[idx]):
                    emb = stitch([got[i] for i in range(len(got))], spans[idx], lengths[idx])
                    writer.add(items[idx][0], emb)
                    del pieces[idx]
                    done += 1
            counts.computed += done
            counts.tokens += n_tokens
            if on_batch:
                on_batch(done, n_tokens)
    return counts


# ------------------------------------------------------------------------ planning and running

@dataclass
class Plan:
    encoder: Encoder
    store: EmbeddingStore
    rows: int
    rows_without_modality: int
    unique: int
    todo: list[tuple[str, str]]
    created: bool = False  # this run created the store (removed again if it stays empty)

    @property
    def cached(self) -> int:
        return self.unique - len(self.todo)


def plan(sequences: list[str | None], encoder: Encoder, cache_root) -> Plan:
    """Normalise and hash every sequence; ask the cache which are missing."""
    cache = EmbeddingCache(cache_root, create=True)
    fingerprint = encoder.fingerprint()
    created = not (cache.root / fingerprint.id).exists()
    store = cache.store(fingerprint)
    prepared: dict[str, str] = {}
    without = 0
    for seq in sequences:
        if not seq:
            without += 1
            continue
        p = encoder.prepare(seq)
        prepared.setdefault(sequence_key(p), p)
    missing = store.missing(prepared)
    return Plan(encoder, store, len(sequences), without, len(prepared),
                [(k, prepared[k]) for k in missing], created)


class Progress:
    """Sequences/s and tokens/s on stderr: redrawn in place on a terminal, a line every 10 s
    otherwise."""

    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = self.tokens = 0
        self.start = self.last = time.perf_counter()

    def __call__(self, n_seqs: int, n_tokens: int) -> None:
        self.done += n_seqs
        self.tokens += n_tokens
        now = time.perf_counter()
        if now - self.last < (0.5 if self.tty else 10.0) and self.done < self.total:
            return
        self.last = now
        dt = max(now - self.start, 1e-9)
        line = (f"{self.label}: {self.done}/{self.total} sequences, {self.done / dt:,.1f} seq/s, "
                f"{self.tokens / dt:,.0f} tokens/s")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")


def extract(sequences: list[str | None], request: EncoderRequest, cache_root, *,
            batch_tokens: int = DEFAULT_BATCH_TOKENS, workers: int | None = None,
            scheduler: str | None = None, progress: bool = True,
            commit_seconds: float = DEFAULT_COMMIT_SECONDS,
            echo: Callable[[str], None] = lambda s: None,
            encoder: Encoder | None = None) -> Summary:
    """Embed every distinct sequence missing from the cache; returns what happened.

    ``encoder``: an already-built encoder for ``request`` (e.g. kept loaded across calls in a
    notebook); by default one is built, and its weights load on first use.
    """
    if batch_tokens < 1:
        raise ConfigError(f"--batch-tokens {batch_tokens} must be positive.",
                          f"The default is {DEFAULT_BATCH_TOKENS}.")
    encoder_info(request.model, request.modality)  # a wrong model/modality pair is named first
    if sequences and not any(sequences):
        from biofuse.errors import DataError

        column = Modality.parse(request.modality).column
        raise DataError(
            f"No row of the dataset has a {request.modality} sequence (column '{column}').",
            "Check --modality; a protein or DNA sequence is derived only from an mRNA/CDS "
            "column (--sequence-col), and an mRNA cannot be derived from a protein.")
    encoder = encoder or build_encoder(request)
    p = plan(sequences, encoder, cache_root)
    summary = Summary(request.model, request.modality, p.store.id, p.rows,
                      p.rows_without_modality, p.unique, p.cached)
    echo(f"{request.modality} / {request.model}: {len(p.todo)} to compute, {p.cached} cached")
    if not p.todo:
        return summary
    start = time.perf_counter()
    try:
        if workers or scheduler:
            from biofuse.pipeline.distributed import compute_distributed

            summary.counts = compute_distributed(p, request, cache_root, batch_tokens,
                                                 workers=workers, scheduler=scheduler,
                                                 progress=progress,
                                                 commit_seconds=commit_seconds)
        else:
            bar = Progress(len(p.todo), request.model) if progress else None
            try:
                summary.counts = compute(encoder, p.todo, p.store, batch_tokens, bar,
                                         commit_seconds)
            finally:
                if bar:
                    bar.close()
    except BaseException as exc:
        if p.created:
            p.store.remove_if_empty()  # a run that failed before committing anything
        if not isinstance(exc, KeyboardInterrupt):
            raise
        summary.interrupted = True
        if not p.store.path.exists():
            summary.seconds = time.perf_counter() - start
            return summary
        p.store.refresh()
        todo = [k for k, _ in p.todo]
        left = set(p.store.missing(todo))
        done = [k for k in todo if k not in left]
        summary.counts.computed, summary.counts.tokens = len(done), p.store.n_tokens(done)
    summary.seconds = time.perf_counter() - start
    return summary
