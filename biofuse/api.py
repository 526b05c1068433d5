"""biofuse's Python API: one documented function per command, for notebooks and for the CLI.

```python
import biofuse

ds = biofuse.load_dataset("mRFP_Expression.csv")                       # validate, map, split
biofuse.extract(ds, modality="all", model="onehot", cache="cache")      # embed what is missing
result = biofuse.fit(ds, fusion="mil", encoders={"dna": "onehot", "rna": "onehot",
                     "protein": "onehot"}, cache="cache", out="runs/mil")
result.metrics["test"]["spearman"]
preds = biofuse.predict("runs/mil", "new.csv", cache="cache")           # a polars DataFrame
emb = biofuse.embeddings(ds, modality="protein", encoder="onehot", cache="cache")
emb.mean()                                                              # [rows, dim] numpy
```

Options are keyword arguments checked by the options dataclasses (``ExtractOptions``,
``FitOptions``, each fusion's and head's ``Options``): a wrong name or an out-of-range value
raises a :class:`biofuse.errors.ConfigError` naming it. The ``biofuse`` command line is a thin
layer over exactly these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biofuse.arguments import int_arg, path_arg, paths_arg, text_arg, texts_arg
from biofuse.cache import EmbeddingCache, Fingerprint, default_cache_dir, sequence_key
from biofuse.errors import ConfigError
from biofuse.modality import ALL, Modality
from biofuse.options import from_dict
from biofuse.pipeline.data import Dataset, DataSpec
from biofuse.pipeline.data import load_dataset as read_dataset
from biofuse.pipeline.extract import ExtractOptions, Summary
from biofuse.pipeline.train import FitOptions, FitResult

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def load_dataset(data: str | Path | DataSpec | Dataset, **spec: Any) -> Dataset:
    """Read, validate and split a table (CSV, TSV, Parquet, FASTA; gzip too).

    ``spec``: the fields of :class:`~biofuse.pipeline.data.DataSpec` (``sequence_col``,
    ``label_cols``, ``split_col``, ``group_col``, ``orf``, ...), as in ``biofuse data inspect``.
    ``ds.report`` says what was kept and dropped, and why.
    """
    if isinstance(data, Dataset):
        if spec:
            raise ConfigError(f"load_dataset got a Dataset and table options "
                              f"({', '.join(spec)}): a Dataset is already read.",
                              "Pass the table's path with the options, or the Dataset alone.")
        return data
    if isinstance(data, DataSpec):
        return read_dataset(data if not spec else DataSpec(**{**data.__dict__, **spec}))
    if "label_cols" in spec and isinstance(spec["label_cols"], str):
        spec["label_cols"] = (spec["label_cols"],)
    path = path_arg("data", data)
    return read_dataset(from_dict(DataSpec, {"path": str(path), **spec}))


def _cache(cache: str | Path | None) -> str | Path:
    if cache is None:
        return default_cache_dir()
    if isinstance(cache, str) and "://" in cache:  # a URL cache, read through fsspec
        return cache
    return path_arg("cache", cache)


def extract(data: str | Path | DataSpec | Dataset, *, modality: str = Modality.PROTEIN,
            cache: str | Path | None = None, progress: bool = True, echo: Echo = _quiet,
            encoder=None, **options: Any) -> list[Summary]:
    """Embed the dataset's sequences of ``modality`` (``dna``, ``rna``, ``protein`` or ``all``)
    with a frozen encoder, computing only what the cache lacks. Returns one summary per
    modality (sequences computed and cached, tokens/s, long sequences windowed...).

    ``options``: the fields of :class:`~biofuse.pipeline.extract.ExtractOptions`
    (``model``, ``layer``, ``dtype``, ``batch_tokens``, ``long_policy``, ``workers``, ...).
    ``encoder``: an already-built encoder to reuse across calls. A KeyboardInterrupt stops after the current
    batch; the summary says ``interrupted`` and finished embeddings are kept.
    """
    from biofuse.errors import ConfigError
    from biofuse.pipeline.extract import extract as extract_sequences

    opts = from_dict(ExtractOptions, options)
    if modality == "all":
        if opts.model not in (None, "onehot"):
            raise ConfigError(f"--modality all with --model {opts.model} is ambiguous: one model "
                              "cannot embed DNA, RNA and protein.",
                              "Run one extract per modality with its --model, or omit --model.")
        modalities = ALL
    else:
        modalities = (Modality.parse(modality),)
    ds = load_dataset(data)
    summaries = []
    for m in modalities:
        summary = extract_sequences(
            ds.frame[m.column].to_list(), opts.request(m), _cache(cache),
            batch_tokens=opts.resolved_batch_tokens(), workers=opts.workers,
            scheduler=opts.scheduler, progress=progress, commit_seconds=opts.commit_every,
            echo=echo, encoder=encoder)
        summaries.append(summary)
        if summary.interrupted:
            break
    return summaries


def fit(data: str | Path | DataSpec | Dataset, *, out: str | Path,
        cache: str | Path | None = None, echo: Echo = _quiet, **options: Any) -> FitResult:
    """Train a fusion model on the cached embeddings of the dataset and write the run
    directory ``out`` (config, metrics, predictions, MIL weights, model, training log).

    ``options``: the fields of :class:`~biofuse.pipeline.train.FitOptions` (``fusion``,
    ``modalities``, ``encoders`` as {modality: encoder name, model directory, or cache store
    id}, ``head``, ``seed``, ``epochs``, ``lr``, ``dtype``, ``fusion_options``,
    ``head_options``, ...). ``echo`` receives
    progress lines (one per epoch or every few seconds). Returns the metrics and the run
    directory; ``interrupted`` is True when Ctrl-C stopped training (the best model so far is
    saved).
    """
    from biofuse.pipeline.train import fit as train

    out = path_arg("out", out)
    return train(load_dataset(data), from_dict(FitOptions, options), _cache(cache), out,
                 echo=echo)


def finetune(data: str | Path | DataSpec | Dataset, *, out: str | Path, echo: Echo = _quiet,
             **options: Any):
    """Train a transformer encoder end to end (``method="lora"`` adapters, or ``"full"``) with a
    head on the dataset's ``modality``, and write the run directory ``out``: config, metrics,
    predictions, training log, the head (``model.pt``), and ``out/encoder``, the finetuned
    encoder as a model directory that :func:`extract` reads with ``model="out/encoder"`` (its
    own fingerprint: never mixed with the base model's embeddings).

    ``options``: the fields of :class:`~biofuse.pipeline.finetune.FinetuneOptions`
    (``modality``, ``model``, ``method``, ``lora_rank``, ``lr``, ``backbone_lr``, ``epochs``,
    ``batch_size``, ``batch_tokens``, ``dtype``, ``checkpointing``, ``head``,
    ``head_options``, ...). Ctrl-C keeps the best model so far (``interrupted``); calling again
    with the same options resumes from the last finished epoch. Returns a
    :class:`~biofuse.pipeline.finetune.FinetuneResult`."""
    from biofuse.pipeline.finetune import FinetuneOptions
    from biofuse.pipeline.finetune import finetune as train

    out = path_arg("out", out)
    return train(load_dataset(data), from_dict(FinetuneOptions, options), out, echo=echo)


def predict(run_dir: str | Path, data: str | Path, *, cache: str | Path | None = None,
            out: str | Path | None = None, dataset: str | None = None, echo: Echo = _quiet):
    """Score every row of the table ``data`` (read the way the run's table was read); returns
    a polars DataFrame (id, pred_<target> or pred/prob_<class>) and writes it to ``out``
    (.parquet or .csv) when given.

    ``run_dir``: one run directory (`fit`, a probe, or `finetune`), or an experiment's output
    folder: then the configuration chosen on validation for ``dataset`` (needed when the
    experiment has several) predicts with each of its seeds and they are averaged. For fit runs
    the rows' embeddings must be in the cache (the error names the `biofuse extract` command
    that computes them): ``cache``, else the one the run was trained with while it exists, else
    the default; a `finetune` run runs its own encoder and needs no cache."""
    from biofuse.pipeline.experiment.predict import predict_chosen, predict_run

    run_dir, data = path_arg("run_dir", run_dir), path_arg("data", data)
    out = path_arg("out", out, optional=True)
    text_arg("dataset", dataset, optional=True)
    if (run_dir / "runs.parquet").is_file():  # an experiment's folder
        return predict_chosen(run_dir, data, cache, out, dataset, echo)
    return predict_run(run_dir, data, cache, out)


@dataclass
class Embeddings:
    """Per-token embeddings of one modality for every row of a dataset."""

    ids: list[str]
    arrays: list[np.ndarray | None]  # [tokens, dim] per row; None where a row lacks the modality
    fingerprint: Fingerprint

    def __len__(self) -> int:
        return len(self.ids)

    def mean(self) -> np.ndarray:
        """Mean over tokens: [rows, dim] float32 (NaN rows where the modality is absent), ready
        for scikit-learn."""
        dim = self.fingerprint.dim
        return np.stack([a.astype(np.float32).mean(0) if a is not None and len(a)
                         else np.full(dim, np.nan, np.float32) for a in self.arrays])

    def padded(self):
        """A torch tensor [rows, max tokens, dim] (float32, zero padding) and its bool mask."""
        import torch

        lengths = [0 if a is None else len(a) for a in self.arrays]
        out = torch.zeros(len(self.arrays), max(lengths, default=0), self.fingerprint.dim)
        for i, a in enumerate(self.arrays):
            if a is not None:
                out[i, :len(a)] = torch.from_numpy(a.astype(np.float32))
        mask = torch.arange(out.shape[1])[None, :] < torch.tensor(lengths)[:, None]
        return out, mask


def embeddings(data: str | Path | DataSpec | Dataset, *, modality: str, encoder: str | None = None,
               cache: str | Path | None = None, dtype: str = "float32") -> Embeddings:
    """Read the cached embeddings of ``modality`` for every row of the dataset, in the encoder's
    own tokens. ``encoder``: registered name, model directory or fingerprint id (default: the
    modality's default encoder)."""
    from biofuse.pipeline.extract import extract_command
    from biofuse.pipeline.train.inputs import find_store

    ds = load_dataset(data)
    m = Modality.parse(modality)
    encoder = text_arg("encoder", encoder or m.default_encoder)
    text_arg("dtype", dtype, choices=("float32", "float16"))
    seqs = ds.frame[m.column].to_list()
    keys = [sequence_key(s) for s in seqs if s]
    root = _cache(cache)
    store = find_store(EmbeddingCache(root), m, encoder, keys,
                       extract_command(ds.spec, m, encoder, root))
    ragged = store.load(keys, dtype=dtype)
    position = np.cumsum([bool(s) for s in seqs]) - 1  # row -> index among rows with a sequence
    arrays = [ragged[int(position[i])] if s else None for i, s in enumerate(seqs)]
    return Embeddings(ds.frame["id"].to_list(), arrays, store.fingerprint)


def plan(experiment: str | Path, *, out: str | Path | None = None,
         cache: str | Path | None = None, track: str | None = None):
    """Validate an experiment file (every problem at once, as one
    :class:`~biofuse.pipeline.experiment.ExperimentError`) and say what running it would do:
    per encoder the sequences to compute vs cached, the fits to run vs already finished.
    ``track`` is checked as :func:`run` would. Computes nothing."""
    from biofuse.pipeline.experiment import load_experiment, make_plan
    from biofuse.pipeline.experiment.track import parse_track

    parse_track(track)

    return make_plan(load_experiment(path_arg("experiment", experiment),
                                     out=path_arg("out", out, optional=True),
                                     cache=path_arg("cache", cache, optional=True)))


def run(experiment: str | Path, *, out: str | Path | None = None,
        cache: str | Path | None = None, workers: int | None = None,
        scheduler: str | None = None, track: str | None = None, progress: bool = True,
        echo: Echo = _quiet):
    """Run an experiment file: validate it, extract what its encoders lack (each once over every
    dataset), run its fits in parallel (a local Dask cluster of ``workers``, or the cluster at
    ``scheduler``), skip fits already finished, and write ``results.parquet/.csv/.md`` to its
    output folder. A ``[[fit]]`` whose options are distributions is searched (Optuna trials,
    then the best configuration per seed; needs the ``search`` extra).
    ``track``: ``"mlflow"`` or ``"mlflow:URI"`` logs every finished fit to MLflow
    (one MLflow run per fit). Returns an :class:`~biofuse.pipeline.experiment.ExperimentResult`
    (``results``: one row per configuration; ``failed``: fits that failed, with their
    errors)."""
    from biofuse.pipeline.encoders import check_workers
    from biofuse.pipeline.experiment import load_experiment, run_experiment
    from biofuse.pipeline.experiment.track import parse_track
    from biofuse.pipeline.extract.distributed import check_scheduler

    check_workers(int_arg("workers", workers, 1, optional=True), "cpu")  # before any work
    check_scheduler(scheduler)
    tracking = parse_track(track)
    exp = load_experiment(path_arg("experiment", experiment),
                          out=path_arg("out", out, optional=True),
                          cache=path_arg("cache", cache, optional=True))
    return run_experiment(exp, workers=workers, scheduler=scheduler, progress=progress,
                          echo=echo, track=tracking)


def report(inputs: str | Path | list[str | Path], *, out: str | Path,
           reference: str | list[str] = "all", cache: str | Path | None = None,
           examples: int = 3, echo: Echo = _quiet) -> Path:
    """Write a report (``out/report.md`` and PNG figures) of experiment folders or run
    directories: results per dataset beside published numbers (``reference``: ``all``, a
    shipped source — biolangfusion, bridging, codonbert — or a CSV of your own), MIL modality
    weights, learning curves, test scatter and per-codon attribution of the chosen
    configurations. ``cache``: where the runs' embeddings are, if not where they were trained.
    Returns the page's path."""
    from biofuse.pipeline.report import make_report

    return make_report(paths_arg("inputs", inputs), path_arg("out", out),
                       references=texts_arg("reference", reference),
                       cache=path_arg("cache", cache, optional=True),
                       examples=int_arg("examples", examples, 1, 50), echo=echo)


def demo_experiment(data: str | Path | None = None, *, epochs: int = 150, seeds: int = 3,
                    protein: str = "onehot", sequence_col: str | None = None,
                    label_cols: tuple[str, ...] = ()) -> str:
    """The TOML of the demo's grid: every single modality, ``concat``, and ``mil`` with and
    without its entropy term, over ``seeds`` seeds, on ``data`` or on the shipped example, whose
    label plants a protein signal and an mRNA signal (so only fusion sees both) and whose DNA
    column is a region with no signal (a negative control MIL should learn to ignore).
    ``protein``: the protein encoder (``unirep1900`` uses real UniRef50 weights; slower to fit,
    its 1900-dim features are projected to 128 before the TextCNN). ``sequence_col`` and
    ``label_cols`` name the columns of ``data`` when they are not detected."""
    import json

    from biofuse.examples import EXAMPLE_CSV

    if data is None:
        dataset = (f'path = "{EXAMPLE_CSV.as_posix()}"\nlabel_cols = ["expression"]\n'
                   'dna_col = "upstream"  # a region with no signal: the negative control')
    else:
        dataset = f'path = {json.dumps(Path(data).resolve().as_posix())}'
        if sequence_col:
            dataset += f"\nsequence_col = {json.dumps(sequence_col)}"
        if label_cols:
            dataset += f"\nlabel_cols = {json.dumps(list(label_cols))}"
    head = "" if protein == "onehot" else "textcnn = { projection = 128 }\n"
    fit = f"epochs = {epochs}\nlr = 3e-3\n{head}"
    return f"""# biofuse demo: single modalities vs fusion (`biofuse run` runs this file)
name = "demo"
seeds = {list(range(seeds))}

[datasets.{"example" if data is None else "data"}]
{dataset}

[encoders]
dna = "onehot"
rna = "onehot"
protein = "{protein}"

[[fit]]
name = "single modalities"
fusion = "none"
modalities = ["dna", "rna", "protein"]
{fit}
[[fit]]
name = "fusion"
fusion = ["concat", "mil"]
entropy_weights = [[0.0], [0.1]]  # MIL without and with its entropy term
mil = {{ dim = 128 }}
{fit}"""


@dataclass
class DemoResult:
    experiment: Any  # the ExperimentResult of `run`
    report: Path | None  # None when no fit finished


def demo(*, data: str | Path | None = None, out: str | Path = "biofuse-demo", epochs: int = 150,
         seeds: int = 3, protein: str = "onehot", sequence_col: str | None = None,
         label_cols: tuple[str, ...] = (), workers: int | None = None,
         track: str | None = None, echo: Echo = print) -> DemoResult:
    """biofuse end to end on a small table, on the CPU, offline: write the demo's experiment
    file (:func:`demo_experiment`) to ``out/demo.toml``, run it (one-hot / UniRep embeddings
    into ``out/cache``, the fits in parallel; ``track`` as for :func:`run`) and write the
    report to ``out/report``."""
    from biofuse.pipeline.encoders import check_workers
    from biofuse.pipeline.experiment.track import parse_track

    # checked before anything is written
    check_workers(int_arg("workers", workers, 1, optional=True), "cpu")
    parse_track(track)
    int_arg("epochs", epochs, 1)
    int_arg("seeds", seeds, 1, 20)
    text_arg("protein", protein)
    label_cols = texts_arg("label_cols", label_cols)
    text_arg("sequence_col", sequence_col, optional=True)
    data = path_arg("data", data, optional=True)
    out = path_arg("out", out)
    out.mkdir(parents=True, exist_ok=True)
    toml = out / "demo.toml"
    toml.write_text(demo_experiment(data, epochs=epochs, seeds=seeds, protein=protein,
                                    sequence_col=sequence_col, label_cols=tuple(label_cols)))
    echo(f"demo: the grid is {toml} (single modalities, concat, mil with and without its "
         "entropy term); `biofuse run` runs any such file")
    result = run(toml, out=out / "experiment", cache=out / "cache", workers=workers, track=track,
                 echo=echo)
    finished = (result.runs["status"] == "complete").any()
    page = report(out / "experiment", out=out / "report", echo=echo) if finished else None
    return DemoResult(result, page)
