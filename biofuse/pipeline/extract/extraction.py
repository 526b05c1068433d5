"""`biofuse extract`: plan what is missing from the cache, compute it here or on Dask workers,
and say what happened.

The client plans (prepare, hash, ask the cache what is missing: plan.py) and reports; the work
itself (compute.py) is the same in-process and on Dask workers (distributed.py).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from biofuse.cache import EmbeddingCache
from biofuse.cache.fingerprint import parse_long_policy
from biofuse.errors import ConfigError, DataError
from biofuse.modality import Modality
from biofuse.pipeline.data import DataSpec
from biofuse.pipeline.encoders import Encoder, EncoderRequest, build_encoder, encoder_info
from biofuse.pipeline.extract.compute import DEFAULT_COMMIT_SECONDS, Counts, compute
from biofuse.pipeline.extract.options import DEFAULT_BATCH_TOKENS
from biofuse.pipeline.extract.plan import plan
from biofuse.pipeline.extract.progress import Progress


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
            from biofuse.pipeline.extract.distributed import compute_distributed

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


def extract_command(spec: DataSpec, modality: Modality | str, encoder: str, cache_root, *,
                    long_policy: str | None = None) -> str:
    """The `biofuse extract` command that computes the embeddings a later step needs (quoted in
    its errors and records): the table read as ``spec`` reads it, and for a cache store id the
    encoder settings its fingerprint records (else ``long_policy`` when given)."""
    args = ["biofuse", "extract", str(spec.path), "--modality", str(modality)]
    fp = _store_fingerprint(encoder, cache_root)
    if fp is None:
        args += ["--model", encoder] + (["--long", long_policy] if long_policy else [])
    else:
        args += ["--model", fp.encoder or fp.model_id]
        if fp.compute_dtype != "none":
            policy, _, overlap = parse_long_policy(fp.long_policy)
            args += ["--layer", str(fp.layer), "--dtype", fp.compute_dtype, "--long", policy]
            if overlap is not None:
                args += ["--window-overlap", str(overlap)]
    args += spec.cli_flags() + ["--cache", str(cache_root)]
    return shlex.join(args)


def _store_fingerprint(encoder: str, cache_root):
    """The fingerprint of the store ``encoder`` names, if it is a store id of the cache."""
    try:
        cache = EmbeddingCache(cache_root)
        return cache.open_id(encoder).fingerprint if encoder in cache.fingerprint_ids() else None
    except Exception:  # no cache there (yet): the hint names the encoder as given
        return None
