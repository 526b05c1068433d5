"""The train stage: a fusion model trained on cached embeddings (`biofuse fit`), and what every
training stage shares.

Takes in: a Dataset, the cache, and a :class:`FitOptions` (fusion, head, encoders, training
options). Hands on: a run directory (config.json, metrics.json, predictions, model weights,
training log: rundir.py) and a :class:`FitResult`; ``predict`` scores new tables with it.

inputs.py loads a dataset's cached embeddings (ModelInputs), targets.py standardises labels,
trainer.py is the model-agnostic loop with callbacks, metrics.py scores, fit.py puts them
together; options.py and trainer.py, targets.py, metrics.py and rundir.py serve finetune too.
"""

from biofuse.pipeline.train.fit import fit
from biofuse.pipeline.train.options import FitOptions, TrainOptions
from biofuse.pipeline.train.predict import predict
from biofuse.pipeline.train.rundir import FitResult

__all__ = ["FitOptions", "FitResult", "TrainOptions", "fit", "predict"]
