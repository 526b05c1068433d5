"""A search's Optuna study, as the grid's process and the fits' workers both see it.

The study lives in its folder (``OUT/search/<dataset>/<method>-<head>-<hash>/study.journal``,
Optuna's journal file storage: no server, no database), so a killed ``biofuse run`` finds it
again, and a fit on a Dask worker that sees the output folder reports its validation scores to
it and asks whether to stop (pruning) without going through the grid's process.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from biofuse.errors import ConfigError
from biofuse.pipeline.experiment.space import SearchSettings
from biofuse.pipeline.train.trainer import Callback

JOURNAL = "study.journal"


class Pruned(Exception):
    """Raised by :class:`Reporter` to abandon a trial that trails the others; unlike Ctrl-C the
    trainer does not catch it, so nothing of the trial's model is kept."""

    def __init__(self, epoch: int, score: float):
        super().__init__(f"pruned at epoch {epoch} (validation {score:.4f})")
        self.epoch, self.score = epoch, score


def require_optuna():
    """Optuna, or the error that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("This experiment file searches (an option is a distribution such as "
                          "{ log_uniform = [...] }), and searches need Optuna, which is not "
                          "installed.",
                          "pip install 'biofuse-ml[search]' (or pip install optuna), or give "
                          "the options values or lists instead.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # biofuse prints its own lines
    return optuna


def open_study(folder: Path, name: str, settings: SearchSettings):
    """The study ``name`` in ``folder`` (created empty the first time), with its sampler and
    pruner."""
    optuna = require_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(Path(folder) / JOURNAL)))
    # A sampler seeded as on the first run would draw the first run's values again after a
    # resume (measured: a resumed MIL study re-ran trial 0's values as trial 9). Offsetting the
    # seed by the trials already asked keeps a study reproducible from its own history.
    seed = None if settings.seed is None else settings.seed + asked(storage, name)
    with warnings.catch_warnings():  # constant_liar is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = (optuna.samplers.RandomSampler(seed=seed)
                   if settings.sampler == "random" else
                   optuna.samplers.TPESampler(seed=seed,
                                              n_startup_trials=settings.startup_trials,
                                              constant_liar=True))
    pruner = (optuna.pruners.NopPruner() if settings.pruner == "none" else
              optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials,
                                          n_warmup_steps=settings.warmup_epochs))
    return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def asked(storage, name: str) -> int:
    """Trials the study ``name`` holds in ``storage`` (0 when it does not exist yet)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


class Reporter(Callback):
    """A trial's fit reporting to its study: after every epoch the best validation selection
    score so far, at step ``candidate x max_epochs + epoch`` (MIL trains a candidate per entropy
    weight; the same step means the same candidate and epoch in every trial); when the pruner
    says the trial trails the others there, training stops with :class:`Pruned`.

    ``trial``: {"folder", "study", "trial_id", "settings"} — plain data, so it travels to Dask
    workers; the study is opened on first use."""

    def __init__(self, trial: dict[str, Any]):
        self.ref = trial
        self.trial = None
        self.candidate, self.last_epoch, self.best = 0, 0, -math.inf

    def on_epoch_end(self, trainer, log):
        if log.epoch <= self.last_epoch:  # a new candidate starts over at epoch 1
            self.candidate += 1
        self.last_epoch = log.epoch
        if math.isfinite(log.selection):
            self.best = max(self.best, log.selection)
        if not math.isfinite(self.best):
            return
        if self.trial is None:
            optuna = require_optuna()
            settings = SearchSettings(**self.ref["settings"])
            study = open_study(Path(self.ref["folder"]), self.ref["study"], settings)
            self.trial = optuna.trial.Trial(study, self.ref["trial_id"])
        self.trial.report(self.best, self.candidate * trainer.max_epochs + log.epoch)
        if log.epoch < trainer.max_epochs and self.trial.should_prune():  # the last: no gain
            raise Pruned(log.epoch, self.best)
