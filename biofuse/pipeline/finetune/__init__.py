"""The finetune stage (optional, beside fit): one transformer encoder trained end to end with a
head, by LoRA adapters or every weight.

Takes in: a Dataset and a :class:`FinetuneOptions` (encoder, method, the shared training
options). Hands on: a run directory like fit's plus ``RUNDIR/encoder``, the finetuned encoder as
a model directory that ``extract --model`` reads (its own fingerprint), so ``fit`` can fuse it.

options.py holds the flags, model.py the encoder+head network and its token batches,
training.py the loop (resumable), predict.py scoring new tables with a finetune run.
"""

from biofuse.pipeline.finetune.options import FinetuneOptions
from biofuse.pipeline.finetune.training import FinetuneResult, finetune

__all__ = ["FinetuneOptions", "FinetuneResult", "finetune"]
