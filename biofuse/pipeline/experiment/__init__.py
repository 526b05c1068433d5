"""The experiment stage: `biofuse run` — a TOML file of datasets, encoders and grids of fits and
finetunes, run whole, resumably, in parallel.

Takes in: an experiment file (file.py validates all of it at once; tasks.py expands its
``[[fit]]`` and ``[[finetune]]`` tables into :class:`Task`s). Hands on: extraction of what the
cache lacks (the extract stage, once per encoder), every task run in its own run directory (the
train and finetune stages), and the results tables of the report stage in the output folder.
plan.py says what is to do (``--dry-run``), runner.py does it, progress.py prints where the
grid is.
"""

from biofuse.pipeline.experiment.file import Experiment, ExperimentError, load_experiment
from biofuse.pipeline.experiment.plan import ExperimentPlan, make_plan
from biofuse.pipeline.experiment.runner import ExperimentResult, run_experiment
from biofuse.pipeline.experiment.tasks import Task

__all__ = ["Experiment", "ExperimentError", "ExperimentPlan", "ExperimentResult", "Task",
           "load_experiment", "make_plan", "run_experiment"]
