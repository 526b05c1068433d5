"""Extraction on Dask: a local cluster (one worker per GPU when CUDA is present) or an existing one.

The client splits the missing sequences into tasks of about ``TASK_BATCHES`` batches each. A
worker loads the encoder once per process, embeds its task and commits its own cache parts; the
cache format (independent parts, atomic rename) is what lets any number of workers write one
store without coordination. The client only plans, gathers counts and reports.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict

from biofuse.errors import ConfigError
from biofuse.pipeline.encoders import EncoderRequest, build_encoder
from biofuse.pipeline.extract.compute import Counts, compute
from biofuse.pipeline.extract.progress import Progress

TASK_BATCHES = 8
_LOADED: dict[str, object] = {}  # per worker process: request -> encoder


def _encoder_for(request: EncoderRequest):
    key = json.dumps(asdict(request), sort_keys=True)
    if key not in _LOADED:
        _LOADED.clear()  # one model per worker at a time
        _LOADED[key] = build_encoder(request)
    return _LOADED[key]


def run_task(request: EncoderRequest, cache_root: str, items: list[tuple[str, str]],
             batch_tokens: int, commit_seconds: float):
    """Runs on a worker: embed ``items`` and commit them; returns the counts."""
    from biofuse.cache import EmbeddingCache

    encoder = _encoder_for(request)
    store = EmbeddingCache(cache_root).store(encoder.fingerprint(), create=False)
    return compute(encoder, items, store, batch_tokens, commit_seconds=commit_seconds)


def split_tasks(items: list[tuple[str, str]], batch_tokens: int) -> list[list[tuple[str, str]]]:
    """Tasks of roughly ``TASK_BATCHES * batch_tokens`` characters, longest sequences first."""
    order = sorted(items, key=lambda kv: -len(kv[1]))
    tasks, current, size = [], [], 0
    budget = TASK_BATCHES * batch_tokens
    for kv in order:
        current.append(kv)
        size += len(kv[1])
        if size >= budget:
            tasks.append(current)
            current, size = [], 0
    if current:
        tasks.append(current)
    return tasks


#: Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (``distributed.nanny.
#: pre-spawn-environ``); an explicit value also turns off glibc's adaptive mmap threshold, so
#: every allocation over 128 KiB is mapped from the kernel and unmapped when freed. Torch frees
#: and reallocates its activations every step: a 2-epoch mRFP ``xattn`` fit spent 21 s of 59 s
#: CPU in the kernel with it, 1 s without (docs/extract.md, "Distributed extraction").
#: biofuse's own clusters start their workers without it; a value in the user's environment
#: is still passed on.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def local_cluster(workers: int, device: str):
    """dask-cuda's LocalCUDACluster (one worker per GPU) on CUDA if installed, else LocalCluster;
    workers keep glibc's own memory trimming (``WORKER_ENVIRON``)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(WORKER_ENVIRON):
        if device.startswith("cuda"):
            try:
                from dask_cuda import LocalCUDACluster

                return LocalCUDACluster(n_workers=workers or None, threads_per_worker=1)
            except ImportError:
                pass
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=40)


#: what a scheduler address looks like: [scheme://]host:port
_ADDRESS = re.compile(r"((tcp|tls|ucx|ws|wss|inproc)://)?[^\s:/]+:\d{1,5}")


def check_scheduler(scheduler: str | None) -> None:
    """A --scheduler that cannot be an address is refused before any work."""
    if scheduler is not None and not (isinstance(scheduler, str)
                                      and _ADDRESS.fullmatch(scheduler)):
        raise ConfigError(f"--scheduler {scheduler!r} is not the address of a Dask scheduler.",
                          "Give it as tcp://HOST:PORT (`dask scheduler` prints it when it "
                          "starts), or use --workers N for a local cluster.")


def connect(scheduler: str):
    """A client of the Dask scheduler at ``scheduler``, or a clean error naming the address;
    warns when its workers run with Dask's malloc trim threshold (``WORKER_ENVIRON``)."""
    from distributed import Client

    check_scheduler(scheduler)
    try:
        client = Client(scheduler, timeout="5s")
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"No Dask scheduler answers at {scheduler} ({exc}).",
                          "Check the address (tcp://HOST:PORT) and that `dask scheduler` "
                          "runs there, or use --workers N for a local cluster.") from None
    _warn_on_trimming(client)
    return client


def _trim_threshold() -> str | None:  # runs on each worker
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _warn_on_trimming(client) -> None:
    try:
        values = client.run(_trim_threshold)
    except Exception:  # workers without biofuse, a cluster that refuses run(): not our call
        return
    small = [int(v) for v in values.values() if v and v.isdigit() and int(v) < 1 << 20]
    if small:
        import warnings

        warnings.warn(
            f"{len(small)} of the cluster's {len(values)} workers run with "
            f"MALLOC_TRIM_THRESHOLD_={min(small)} (Dask's default is 65536): torch on them "
            "can spend a third of its time faulting freed memory back in (docs/extract.md, "
            "\"Distributed extraction\"). "
            "Start the workers with `MALLOC_TRIM_THRESHOLD_: null` under "
            "distributed.nanny.pre-spawn-environ in their Dask configuration.", stacklevel=3)


def compute_distributed(plan, request: EncoderRequest, cache_root, batch_tokens: int, *,
                        workers: int | None, scheduler: str | None, progress: bool = True,
                        commit_seconds: float = 30.0):
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ConfigError("--workers and --scheduler need dask.distributed, which is not installed.",
                          "pip install 'biofuse-ml[dask]', or run without them.") from exc

    cluster = None
    if scheduler:
        client = connect(scheduler)
    else:
        cluster = local_cluster(workers, request.device)
        client = Client(cluster)
    counts = Counts()
    tasks = split_tasks(plan.todo, batch_tokens)
    bar = Progress(len(plan.todo), request.model) if progress else None
    root = os.path.abspath(str(cache_root))
    try:
        futures = [client.submit(run_task, request, root, task, batch_tokens, commit_seconds,
                                 pure=False)
                   for task in tasks]
        for future in as_completed(futures):
            got = future.result()
            counts.add(got)
            if bar:
                bar(got.computed, got.tokens)
    finally:
        if bar:
            bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
    plan.store.refresh()
    return counts
