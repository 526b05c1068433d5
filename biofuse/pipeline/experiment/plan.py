"""What running an experiment needs, known before anything runs: per encoder the sequences the
cache lacks, per run its directory, its identity (a hash of its resolved configuration) and
whether it already finished. ``biofuse run --dry-run`` prints it; runner.py carries it out.

A run's directory is ``OUT/runs/<dataset>/<method>-<head>-s<seed>-<hash>``: the same
configuration always lands in the same folder, so a killed run resumes and a grown grid runs
only what is new.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biofuse.cache import EmbeddingCache, default_cache_dir
from biofuse.errors import BiofuseError
from biofuse.files import inside
from biofuse.modality import Modality
from biofuse.options import renamed
from biofuse.pipeline.experiment.file import Experiment
from biofuse.pipeline.experiment.tasks import Search, Task
from biofuse.pipeline.train.rundir import RunDir

#: FitOptions that do not change a fit's result, left out of its identity
NOT_IN_HASH = ("threads",)


@dataclass
class EncoderStage:
    """One (modality, encoder) of the grid and what the cache lacks of it."""

    modality: Modality
    encoder: str
    sequences: list[str]  # the union over the datasets that use it, in first-seen order
    store_id: str = ""
    unique: int = 0
    todo: int = 0
    todo_tokens: int = 0
    given_id: bool = False  # the experiment names a cache store id: nothing to extract
    built: Any = field(default=None, repr=False)  # the encoder built while planning, reused

    @property
    def label(self) -> str:
        return f"{self.modality}/{Path(self.encoder).name if os.sep in self.encoder else self.encoder}"


@dataclass
class PlannedFit:
    task: Task
    run_dir: Path
    run_id: str  # hash of the configuration, seed included
    config_id: str  # the same without the seed: the runs one row of the results averages
    finished: bool
    tuned: str | None = None  # a search's best configuration: "30 trials" (results tables)
    searched: tuple[str, ...] = ()  # and the options it searched (always in its label)


@dataclass
class PlannedSearch:
    """One search of the grid: its study (named by a hash of everything but the number of
    trials and the seeds, so adding trials continues it) and its folder."""

    search: Search
    study_id: str
    folder: Path  # OUT/search/<dataset>/<method>-<head>-<study hash>: trials, summary.json
    store_of: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    @property
    def summary(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / "summary.json").read_text())
        except (OSError, ValueError):
            return None

    def describe(self) -> str:
        t = self.search.task
        s = self.summary or {}
        done = s.get("finished_trials", 0)
        return (f"{t.dataset} {t.method}-{t.options['head']}: {len(t.space)} option(s) "
                f"({', '.join(t.space)}), {done} of {t.search.trials} trials done, then the best "
                f"configuration for {len(self.search.seeds)} seed(s)")


@dataclass
class ExperimentPlan:
    experiment: Experiment
    cache: Path
    stages: list[EncoderStage]
    fits: list[PlannedFit]
    searches: list[PlannedSearch] = field(default_factory=list)

    @property
    def todo(self) -> list[PlannedFit]:
        return [f for f in self.fits if not f.finished]

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment.name, "out": str(self.experiment.out),
                "cache": str(self.cache),
                "extract": [{"modality": str(s.modality), "encoder": s.encoder,
                             "store": s.store_id, "sequences": s.unique, "to_compute": s.todo,
                             "tokens_to_compute": s.todo_tokens, "cached": s.unique - s.todo}
                            for s in self.stages],
                "fits": {"total": len(self.fits), "finished": len(self.fits) - len(self.todo),
                         "to_run": len(self.todo)},
                "searches": [{"dataset": s.search.task.dataset, "study": s.study_id,
                              "folder": str(s.folder), "options": list(s.search.task.space),
                              "trials": s.search.task.search.trials,
                              "finished_trials": (s.summary or {}).get("finished_trials", 0),
                              "seeds": s.search.seeds} for s in self.searches]}

    def format(self) -> list[str]:
        lines = [f"experiment {self.experiment.name}: {len(self.experiment.datasets)} dataset(s), "
                 f"cache: {self.cache}, results: {self.experiment.out}"]
        for s in self.stages:
            if s.given_id:
                lines.append(f"  extract {s.label}: store {s.store_id[:12]} given, nothing to do")
            else:
                lines.append(f"  extract {s.label}: {s.todo} of {s.unique} sequences to compute "
                             f"({s.todo_tokens:,} tokens), {s.unique - s.todo} cached")
        done = len(self.fits) - len(self.todo)
        lines.append(f"  fits: {len(self.todo)} to run, {done} already finished, "
                     f"{len(self.fits)} in the grid")
        lines += [f"  search {s.describe()}" for s in self.searches]
        return lines


def is_finished(run_dir: Path, task: Task | None = None) -> bool:
    """A run whose directory is complete: status complete, and every file it should hold there
    and readable (a run killed while writing them is run again); with ``task``, also made with
    the fusion and head options ``task`` resolves to today (:func:`made_with_other_defaults`)."""
    return not RunDir(run_dir).problems() and not (
        task is not None and made_with_other_defaults(run_dir, task))


def made_with_other_defaults(run_dir: Path, task: Task) -> bool:
    """Whether a finished fit's model was built with other fusion or head options than ``task``
    gets today. A run id names the options the user gave, so a default that changed between
    versions (0.7: the attention fusions' width and dropout; 0.10: their heads) would otherwise
    leave the old model counted as this configuration's; such a run is run again. Defaults
    that follow the inputs' widths are compared as resolved for the saved model's inputs, by
    today's rule on both sides (configs saved before 0.10 left them unresolved). Options the
    saved config lacks (added since, with the old behaviour as default) are not compared."""
    if task.kind != "fit":
        return False
    from dataclasses import asdict

    from biofuse.fusion import FUSIONS
    from biofuse.fusion.model import ModelConfig
    from biofuse.heads import HEADS
    from biofuse.options import from_dict

    def plain(options: dict) -> dict:
        return json.loads(json.dumps(options, default=str))

    try:
        saved = json.loads((run_dir / "config.json").read_text())["model"]
        o = task.options
        fusion = FUSIONS[o["fusion"]]
        chosen = {fusion.search[0]} if fusion.search else set()  # fit chose it: not a default
        model = ModelConfig.from_dict(saved)
        head = HEADS[o["head"]].Options
        pairs = [(plain(model.resolved_fusion_options()),
                  plain(model.resolved_fusion_options(o.get("fusion_options") or {}))),
                 (saved.get("head_options") or {},
                  plain(asdict(from_dict(head, o.get("head_options") or {}))))]
        for before, now in pairs:
            if any(k in before and k not in chosen and before[k] != v for k, v in now.items()):
                return True
    except (OSError, ValueError, KeyError, TypeError, BiofuseError):
        return False  # RunDir.problems() judges damaged directories
    return False


def _hash(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def run_id_options(task: Task) -> dict[str, Any]:
    """The options that name a run: every resolved option but those that do not change its
    result, under the name each option had when run ids were first made, so renaming an option
    (fit's ``precision``, now ``dtype``) leaves finished runs finished."""
    former = {new: old for old, new in renamed(task.grid_kind.options).items()}
    return {former.get(k, k): v for k, v in task.resolved().to_dict().items()
            if k not in NOT_IN_HASH and k != "encoders"}


def make_plan(exp: Experiment, cache: Path | None = None) -> ExperimentPlan:
    """What the grid needs: per encoder the sequences to compute, per fit its run directory and
    whether it already finished. Builds each encoder (to know its fingerprint) but computes
    nothing."""
    from biofuse.pipeline.encoders import build_encoder
    from biofuse.pipeline.extract.plan import plan as extract_plan

    root = Path(cache or exp.cache or default_cache_dir())
    stages: dict[tuple[Modality, str], EncoderStage] = {}
    for task in [*exp.tasks, *(s.task for s in exp.searches)]:
        if task.kind != "fit":  # a finetune reads sequences, not the cache
            continue
        ds = exp.loaded[task.dataset]
        for m, enc in task.encoders.items():
            m = Modality.parse(m)
            stage = stages.setdefault((m, enc), EncoderStage(m, enc, []))
            stage.sequences += [s for s in ds.frame[m.column].to_list() if s]
    ids = set(EmbeddingCache(root).fingerprint_ids()) if root.exists() else set()
    for stage in stages.values():
        stage.sequences = list(dict.fromkeys(stage.sequences))
        if stage.encoder in ids:
            stage.store_id, stage.given_id = stage.encoder, True
            stage.unique = len(stage.sequences)
            continue
        request = exp.extract_options(stage.encoder).request(stage.modality)
        encoder = stage.built = build_encoder(request)
        p = extract_plan(stage.sequences, encoder, root)
        if p.created:
            p.store.remove_if_empty()  # planning leaves no trace
        nt = 1 if stage.modality == Modality.PROTEIN else encoder.fingerprint().nt_per_token
        stage.store_id, stage.unique, stage.todo = p.store.id, p.unique, len(p.todo)
        stage.todo_tokens = (len(p.todo) if encoder.per_sequence
                             else sum(len(s) // max(nt, 1) for _, s in p.todo))
    store_of = {(str(m), e): s.store_id for (m, e), s in stages.items()}
    fits = [plan_fit(exp, task, store_of) for task in exp.tasks]
    searches = []
    for search in exp.searches:
        t = search.task
        identity = _identity(exp, t, store_of)
        identity[t.kind].pop("seed")
        identity["space"] = {k: d.describe() for k, d in sorted(t.space.items())}
        identity["search"] = {k: v for k, v in t.search.to_dict().items() if k != "trials"}
        study = _hash(identity)
        folder = inside(exp.out, "search", t.dataset,
                        f"{t.method}-{t.options['head']}-{study[:10]}")
        searches.append(PlannedSearch(search, study, folder, store_of))
    return ExperimentPlan(exp, root, list(stages.values()), fits, searches)


def _identity(exp: Experiment, task: Task, store_of: dict) -> dict[str, Any]:
    identity = {"dataset": exp.loaded[task.dataset].hash, task.kind: run_id_options(task)}
    if task.kind == "fit":
        identity["encoders"] = {m: store_of[(m, e)] for m, e in task.encoders.items()}
    return identity


def plan_fit(exp: Experiment, task: Task, store_of: dict[tuple[str, str], str],
             tuned: str | None = None, searched: tuple[str, ...] = ()) -> PlannedFit:
    """A task's run directory, identity and whether it already finished (``store_of``:
    (modality, encoder) -> cache store id)."""
    identity = _identity(exp, task, store_of)
    run_id = _hash(identity)
    options = identity[task.kind]
    options.pop("seed")
    run_dir = inside(exp.out, "runs", task.dataset,
                     f"{task.method}-{options['head']}-s{task.options.get('seed', 0)}-"
                     f"{run_id[:10]}")
    return PlannedFit(task, run_dir, run_id, _hash(identity), is_finished(run_dir, task), tuned,
                      searched)
