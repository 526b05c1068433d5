"""`biofuse run` on a 24-fit grid: parallel on a local Dask cluster vs one after another, and
the grid's overhead over the same fits called bare (``biofuse.fit`` in a loop).

The grid: the shipped synthetic example (400 CDSs), one-hot encoders, single modalities (dna,
rna, protein), concat, and MIL with and without its entropy term, 4 seeds = 24 fits of a fixed
number of epochs (early stopping off, so every mode does the same work). Each mode writes to its
own experiment folder over one shared, pre-filled cache, in this order, in one run:

  bare        biofuse.fit for each of the 24 configurations, in this process (all cores)
  sequential  biofuse.run --workers 1 (in process, all cores per fit)
  parallel    biofuse.run --workers CORES (one Dask worker per core, 1 torch thread each)
  parallel, Dask's trim   the same with MALLOC_TRIM_THRESHOLD_=65536 in the workers'
              environment, as Dask sets it and biofuse before 0.10 left it

    python bench/grid_bench.py [--epochs 30] [--seeds 4]

Writes bench/results/grid_bench.json; docs/experiments.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def toml(epochs: int, seeds: int) -> str:
    from biofuse.examples import EXAMPLE_CSV

    return f"""seeds = {list(range(seeds))}
cache = "cache"
[datasets.example]
path = "{EXAMPLE_CSV.as_posix()}"
label_cols = ["expression"]
dna_col = "upstream"
[encoders]
dna = "onehot"
rna = "onehot"
protein = "onehot"
[[fit]]
fusion = "none"
modalities = ["dna", "rna", "protein"]
epochs = {epochs}
patience = {epochs}
[[fit]]
fusion = ["concat", "mil"]
epochs = {epochs}
patience = {epochs}
entropy_weights = [[0.0], [0.1]]
mil = {{ dim = 128 }}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    import biofuse
    from biofuse.pipeline.encoders import cores
    from biofuse.pipeline.experiment import load_experiment, make_plan
    from biofuse.pipeline.experiment.fits import extract_stage

    work = Path(tempfile.mkdtemp(prefix="biofuse-grid-bench-"))
    path = work / "grid.toml"
    path.write_text(toml(args.epochs, args.seeds))
    exp = load_experiment(path, out=work / "bare")
    n = len(exp.tasks)
    extract_stage(make_plan(exp), scheduler=None, progress=False, echo=print)  # cache first:
    # every mode then times fits only

    start = time.perf_counter()
    bare = []
    for i, task in enumerate(exp.tasks):
        t = time.perf_counter()
        ds = exp.loaded[task.dataset]
        opts = task.resolved().to_dict()
        biofuse.fit(ds, out=work / "bare" / str(i), cache=exp.cache, **opts)
        bare.append(time.perf_counter() - t)
        print(f"bare fit {i + 1}/{n}: {bare[-1]:.1f} s", flush=True)
    bare_wall = time.perf_counter() - start

    timings = {}
    for mode, workers, trim in (("sequential", 1, None), ("parallel", cores(), None),
                                ("parallel_dask_trim", cores(), "65536")):
        if trim:  # the workers inherit it (a value in the environment wins over Dask's config)
            os.environ["MALLOC_TRIM_THRESHOLD_"] = trim
        t = time.perf_counter()
        result = biofuse.run(path, out=work / mode, workers=workers, progress=False,
                             echo=lambda s: print(s, flush=True))
        timings[mode] = time.perf_counter() - t
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        assert result.ok and result.ran == n, (mode, result.ran)
    out = {"machine": {"cores": cores(), "cpu": platform.processor() or platform.machine(),
                       "python": platform.python_version()},
           "fits": n, "epochs": args.epochs,
           "bare_sum_seconds": round(sum(bare), 2), "bare_wall_seconds": round(bare_wall, 2),
           **{f"{mode}_seconds": round(v, 2) for mode, v in timings.items()},
           "sequential_overhead": round(timings["sequential"] / sum(bare) - 1, 4),
           "parallel_speedup_vs_sequential": round(timings["sequential"] / timings["parallel"], 3),
           "parallel_speedup_vs_bare": round(sum(bare) / timings["parallel"], 3),
           "parallel_speedup_vs_dask_trim": round(timings["parallel_dask_trim"]
                                                  / timings["parallel"], 3)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grid_bench.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
