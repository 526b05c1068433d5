"""`biofuse finetune`: train one transformer encoder end to end (LoRA adapters, or every weight)
with a biofuse head, and save it as a model directory `extract` reads like any other.

The optional stage the design keeps out of the fast path: no cache, the encoder runs in every
step. It shares ``fit``'s pieces — targets and their standardisation, heads, metrics, the
training loop (AdamW, plateau schedule, early stopping on validation, test touched once), the run
directory — and ``extract``'s tokenizers and long-sequence windows. What it adds: token-budget
micro-batches with gradient accumulation to ``batch_size`` rows per step, bf16 autocast,
gradient checkpointing, a checkpoint after every epoch (re-running the same command resumes),
and ``RUNDIR/encoder``: the trained weights (LoRA merged) with their own fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from biofuse.errors import ConfigError
from biofuse.files import disk_errors
from biofuse.heads import HEADS
from biofuse.locks import exclusive
from biofuse.modality import Modality
from biofuse.pipeline.data import Dataset
from biofuse.pipeline.data.splits import split_rows
from biofuse.pipeline.encoders import (
    Encoder,
    EncoderRequest,
    autocast,
    build_encoder,
    encoder_info,
)
from biofuse.pipeline.extract import extract_command
from biofuse.pipeline.finetune.model import (
    EncoderHead,
    Tokens,
    epoch_steps,
    lora_network,
    parameter_counts,
    token_outputs,
    tokens_of,
)
from biofuse.pipeline.finetune.options import FINETUNABLE, FinetuneOptions
from biofuse.pipeline.train.metrics import split_metrics
from biofuse.pipeline.train.rundir import RunDir
from biofuse.pipeline.train.targets import make_targets
from biofuse.pipeline.train.trainer import (
    Callback,
    Checkpoint,
    CsvLog,
    EarlyStopping,
    PlateauLR,
    ProgressLine,
    StepProgress,
    Trainer,
)


@dataclass
class FinetuneResult:
    metrics: dict[str, Any]
    run_dir: Path
    encoder_dir: Path
    interrupted: bool = False
    model: EncoderHead | None = field(default=None, repr=False)


def build_network(options: FinetuneOptions, encoder, device: str):
    """The encoder's torch module in fp32 on ``device``, with checkpointing and LoRA as asked."""
    network = encoder.model.float().to(device)
    if options.checkpointing:
        if not getattr(network, "supports_gradient_checkpointing", False):
            raise ConfigError(f"{encoder.info.name} does not support gradient checkpointing.",
                              "Drop --checkpointing.")
        kwargs = {"use_reentrant": False}  # works with frozen inputs (LoRA)
        if hasattr(network, "activation_checkpointing_enable"):  # transformers >= 5
            network.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            network.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if options.method == "lora":
        r = options.resolved()
        network = lora_network(encoder, network, options.lora_rank, r["lora_alpha"],
                               options.lora_dropout)
    else:
        network.requires_grad_(True)
    return network


def load_encoder(options: FinetuneOptions, device: str):
    """The base encoder, checked to be one finetune can train."""
    model, modality = options.encoder_model, Modality.parse(options.modality)

    def refuse(info) -> None:
        raise ConfigError(f"{model} is not an encoder biofuse can finetune "
                          f"({info.description}).",
                          "Finetune esm2_*, nt_* or rnafm (or a model directory of those "
                          f"architectures); to train a head on frozen {model} embeddings, use "
                          "`biofuse fit --fusion none`.")

    info = encoder_info(model, modality)
    if info is not None and info.family not in FINETUNABLE:
        refuse(info)  # a registered name: refused before any loading
    request = EncoderRequest(model=model, modality=modality, dtype="fp32", device=device,
                             long_policy=options.long_policy,
                             window_overlap=options.window_overlap)
    encoder = build_encoder(request)
    if type(encoder).hidden is Encoder.hidden:  # a directory of a family finetune cannot train
        refuse(encoder.info)
    return encoder


def _run_key(ds: Dataset, options: FinetuneOptions, base_fingerprint: str) -> str:
    """What a checkpoint must match to be resumed: the data, the base weights, every option
    that changes training (not threads)."""
    doc = {"dataset": ds.hash, "base": base_fingerprint,
           "options": {k: v for k, v in options.to_dict().items() if k != "threads"}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finetune(ds: Dataset, options: FinetuneOptions, out: str | Path,
             echo=lambda s: None, *, callbacks: Sequence[Callback] = (),
             score_test: bool = True) -> FinetuneResult:
    """Finetune, select on validation, test once; write the run directory ``out`` with
    ``encoder/`` (a model directory ``extract --model`` reads). Ctrl-C keeps the best model so
    far (status ``interrupted``); running the same call again resumes from the last epoch.
    ``callbacks`` and ``score_test`` as for ``fit`` (a search's trials)."""
    run = RunDir(out)
    run.check_writable()
    with exclusive(run.path, "finetuning a model",
                   "Wait for it to finish, or pass another --out."), disk_errors(run.path):
        return _finetune(ds, options, run, echo, list(callbacks), score_test)


def _finetune(ds: Dataset, options: FinetuneOptions, run: RunDir, echo,
              callbacks: list[Callback] = (), score_test: bool = True) -> FinetuneResult:
    o, r = options, options.resolved()
    start = time.perf_counter()
    if o.threads:
        torch.set_num_threads(o.threads)
    encoder = load_encoder(o, r["device"])
    echo(f"finetuning {o.encoder_model} ({o.method}) on {r['device']}, "
         f"{torch.get_num_threads()} torch threads, {r['dtype']}"
         + (" autocast (this CPU has bf16 matrix units; --dtype fp32 to turn it off)"
            if r["dtype"] == "bf16" and o.dtype == "auto" else ""))
    torch.use_deterministic_algorithms(True, warn_only=True)
    base_fp = encoder.fingerprint()
    targets = make_targets(ds, log1p=o.log1p)
    modality = Modality.parse(o.modality)
    tokens = Tokens.of(encoder, ds.frame[modality.column].to_list(), o.long_policy,
                       o.window_overlap, str(ds.spec.path))
    if tokens.windowed or tokens.truncated:
        echo(f"{tokens.windowed} sequences longer than the context ({encoder.context} tokens) "
             f"are windowed, {tokens.truncated} truncated")
    splits = split_rows(ds.frame["split"].to_numpy(), echo)
    val_rows = splits["val"] if len(splits["val"]) else splits["train"]
    y_raw = ds.labels()
    y = targets.encode(y_raw)

    torch.manual_seed(o.seed)
    network = build_network(o, encoder, r["device"])
    head_options = o.head_config()
    head = HEADS[o.head](encoder.info.dim, targets.n_outputs, head_options)
    model = EncoderHead(encoder, network, head.to(r["device"]))
    counts = parameter_counts(model)
    echo(f"{o.method}: {counts['trainable']:,} of {counts['total']:,} parameters train "
         f"({100 * counts['trainable'] / counts['total']:.2f}%)")
    groups = [{"params": [p for p in model.head.parameters()], "lr": o.lr},
              {"params": [p for p in model.network.parameters() if p.requires_grad],
               "lr": r["backbone_lr"]}]
    opt = torch.optim.AdamW(groups, weight_decay=o.weight_decay)
    key = _run_key(ds, o, base_fp.id)
    record = {"kind": "finetune", "data": asdict(ds.spec), "dataset_hash": ds.hash,
              "finetune": o.to_dict(), "resolved": r, "base_encoder": base_fp.to_dict(),
              "base_encoder_id": base_fp.id, "encoder_model": o.encoder_model,
              "head": {"name": o.head, "in_dim": encoder.info.dim,
                       "n_outputs": targets.n_outputs, "options": asdict(head_options)},
              "parameters": counts, "targets": asdict(targets)}

    def step(m: EncoderHead, rows: np.ndarray):
        with autocast(r["dtype"], r["device"]):
            pred = m(tokens, rows)
        loss = targets.loss(pred.float(), y[torch.from_numpy(rows)].to(pred.device))
        return loss, len(rows), tokens_of(tokens, rows)

    def score(m: EncoderHead) -> float:
        raw = token_outputs(m, tokens, val_rows, r["batch_tokens"], r["dtype"])
        value = split_metrics(targets, y_raw[val_rows], raw).get(targets.metric)
        return -math.inf if value is None or not math.isfinite(value) else value

    trainer = Trainer(
        model, opt, step=step, validate=score, max_epochs=o.epochs,
        batches=lambda epoch: epoch_steps(tokens, splits["train"], o.batch_size,
                                          r["batch_tokens"], encoder.n_specials,
                                          np.random.default_rng([o.seed, epoch])),
        callbacks=[EarlyStopping(o.patience), PlateauLR(opt, o.lr_patience),
                   CsvLog(run.log_path), Checkpoint(run.checkpoint_path, key),
                   StepProgress(echo), ProgressLine(echo, targets.metric, o.epochs, every=0),
                   *callbacks])
    resumed = _resume(run, trainer, key, echo)
    run.write_config(record, status="running")
    result = trainer.run()
    if result.interrupted and trainer.best.state is None:  # stopped inside the first epoch
        run.write_config(record, status="interrupted")
        raise KeyboardInterrupt
    echo(f"best validation {targets.metric} "
         f"{result.best_score:.4f} at epoch {result.best_epoch}" if math.isfinite(
             result.best_score) else "validation metric undefined in every epoch")

    # the selected model: LoRA merged into the weights, saved as a normal model directory
    if o.method == "lora":
        model.network.save_pretrained(str(run.adapter_dir))
        model.network = model.network.merge_and_unload()
    encoder.save_pretrained(model.network, run.encoder_dir)
    saved_fp = build_encoder(replace(encoder.request, model=str(run.encoder_dir))).fingerprint()
    raw = token_outputs(model, tokens, np.arange(ds.frame.height), r["batch_tokens"], r["dtype"])
    metrics = {"task": targets.task,
               "val": split_metrics(targets, y_raw[splits["val"]], raw[splits["val"]]),
               "test": (split_metrics(targets, y_raw[splits["test"]], raw[splits["test"]])
                        if len(splits["test"]) and not result.interrupted and score_test
                        else {}),
               "test_scored": score_test,
               "best_epoch": result.best_epoch, "epochs": result.epochs,
               "resumed_from_epoch": resumed, "val_is_train": not len(splits["val"]),
               "interrupted": result.interrupted, "parameters": counts,
               "seconds": round(time.perf_counter() - start, 3)}
    ids, split_col = ds.frame["id"].to_list(), ds.frame["split"].to_list()
    predictions = pl.DataFrame({"id": ids, "split": split_col} | targets.columns(raw, y_raw))
    record |= {"encoder": saved_fp.to_dict(), "encoder_id": saved_fp.id,
               "extract_command": extract_command(ds.spec, o.modality, str(run.encoder_dir.resolve()),
                                                  "CACHE", long_policy=o.long_policy)}
    run.finish(record, "interrupted" if result.interrupted else "complete",
               model.head.state_dict(), metrics, predictions)
    if not result.interrupted:
        run.checkpoint_path.unlink(missing_ok=True)  # finished: nothing to resume
    return FinetuneResult(metrics, run.path, run.encoder_dir, result.interrupted, model)


def _resume(run: RunDir, trainer: Trainer, key: str, echo) -> int:
    """Continue from ``run``'s checkpoint when it belongs to this same finetune; returns the
    epoch resumed from (0: a fresh start, the directory prepared anew)."""
    path = run.checkpoint_path
    if path.is_file():
        try:
            state = torch.load(path, weights_only=True)
        except Exception as exc:  # truncated or damaged: start over, say so
            echo(f"the checkpoint {path} cannot be read ({type(exc).__name__}); starting over")
            state = None
        if isinstance(state, dict) and state.get("key") != key:
            echo(f"{path} belongs to a finetune with other options or data; starting over")
        elif state is not None:
            problem = trainer.state_problem(state)
            if problem is None:
                trainer.load_state(state)
                run.trim_log(trainer.epoch)
                echo(f"resuming from the checkpoint after epoch {trainer.epoch} ({path})")
                return trainer.epoch
            echo(f"the checkpoint {path} cannot be resumed ({problem}); starting over")
    run.prepare()
    path.unlink(missing_ok=True)
    return 0


