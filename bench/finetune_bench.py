"""Finetuning cost on CPU: LoRA vs full vs a cached `fit`, bf16 vs fp32, per step and per epoch.

ESM-2 35M-size random-init weights (cost does not depend on weight values), saved with
save_pretrained and loaded through biofuse's real loading path, over the mRFP table's proteins
(1,021 training rows of 226 residues; every row encodes the same protein, so this measures cost,
not accuracy). The config is ESM-2's as published, dropout 0 included: with transformers'
default attention dropout of 0.1 a step took twice as long (dropout masks on the [rows, heads,
T, T] attention probabilities). Each configuration runs in its own spawned process, so its peak
resident memory (ru_maxrss) is its own:

  lora / full x bf16 / fp32   one warm-up step, then ``--steps`` optimisation steps of 32 rows
                              (micro-batches within the default token budget, accumulated), and
                              one validation pass over the 219 validation rows; an epoch is
                              (train rows / 32) steps plus the validation pass
  lora bf16 + checkpointing   the same with gradient checkpointing (memory vs time)
  lora bf16, dropout 0.1      the cost of LoRA dropout (the default is 0)
  cached fit                  `biofuse fit --fusion none` on the same model's cached bf16
                              embeddings (extracted once, not timed): seconds per epoch

    python bench/finetune_bench.py --out bench/results/finetune_bench.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MRFP = ROOT.parent / "shared" / "data" / "mrfp_expression" / "mRFP_Expression.csv"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _dataset():
    import biofuse

    if MRFP.exists():
        return biofuse.load_dataset(MRFP)
    import polars as pl  # the same shape without the shared data: 1,459 CDSs of 678 nt

    rng = np.random.default_rng(0)
    seqs = ["ATG" + "".join(rng.choice(list("ACGT"), 675)) for _ in range(1459)]
    split = ["train"] * 1021 + ["val"] * 219 + ["test"] * 219
    path = Path(tempfile.mkdtemp()) / "synthetic.csv"
    pl.DataFrame({"Sequence": seqs, "Value": rng.normal(size=1459), "Split": split}
                 ).write_csv(path)
    return biofuse.load_dataset(path)


def _measure(config: dict, model_dir: str, steps: int, queue) -> None:
    """One configuration in a fresh process: step times, validation time, peak memory."""
    import torch

    from biofuse.heads import HEADS
    from biofuse.pipeline.finetune import FinetuneOptions
    from biofuse.pipeline.finetune.model import EncoderHead, Tokens, epoch_steps, token_outputs
    from biofuse.pipeline.finetune.training import build_network, load_encoder
    from biofuse.pipeline.train.inputs import autocast

    torch.set_num_threads(config.get("threads", torch.get_num_threads()))
    ds = _dataset()
    o = FinetuneOptions(modality="protein", model=model_dir, method=config["method"],
                        dtype=config["dtype"], checkpointing=config.get("checkpointing", False),
                        lora_dropout=config.get("lora_dropout", 0.0))
    r = o.resolved()
    encoder = load_encoder(o, "cpu")
    tokens = Tokens.of(encoder, ds.frame["protein"].to_list(), "window", 64, "mRFP")
    torch.manual_seed(0)
    network = build_network(o, encoder, "cpu")
    model = EncoderHead(encoder, network, HEADS["textcnn"](encoder.info.dim, 1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    split = ds.frame["split"].to_numpy()
    train, val = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    y = torch.from_numpy(ds.labels()[:, 0].astype(np.float32))
    plan = epoch_steps(tokens, train, 32, r["batch_tokens"], encoder.n_specials,
                       np.random.default_rng(0))
    model.train()
    times = []
    for k, micro in enumerate(plan[:steps + 1]):
        t = time.perf_counter()
        opt.zero_grad()
        rows = sum(len(b) for b in micro)
        for batch in micro:
            with autocast(o.dtype, "cpu"):
                pred = model(tokens, batch)[:, 0].float()
            loss = ((pred - y[torch.from_numpy(batch)]) ** 2).mean() * (len(batch) / rows)
            loss.backward()
        opt.step()
        if k:  # the first step is a warm-up
            times.append(time.perf_counter() - t)
    t = time.perf_counter()
    token_outputs(model, tokens, val, r["batch_tokens"], o.dtype)
    val_seconds = time.perf_counter() - t
    step = float(np.median(times))
    step_tokens = 32 * float(tokens.lengths[train].mean())
    queue.put({**config, "trainable": sum(p.numel() for p in model.parameters()
                                          if p.requires_grad),
               "step_seconds": round(step, 3), "step_seconds_all": [round(x, 3) for x in times],
               "train_tokens_per_s": round(step_tokens / step),
               "val_seconds": round(val_seconds, 2),
               "epoch_seconds": round(len(plan) * step + val_seconds, 1),
               "steps_per_epoch": len(plan),
               "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                                    2)})


def _cached_fit(model_dir: str, queue) -> None:
    import biofuse

    ds = _dataset()
    work = Path(tempfile.mkdtemp())
    biofuse.extract(ds, modality="protein", model=model_dir, cache=work / "cache",
                    progress=False, dtype="bf16")
    t = time.perf_counter()
    res = biofuse.fit(ds, fusion="none", modalities=("protein",), encoders={"protein": model_dir},
                      cache=work / "cache", out=work / "run", epochs=5, patience=10,
                      precision="bf16")
    import polars as pl

    log = pl.read_csv(work / "run" / "train_log.csv")
    queue.put({"method": "cached fit", "dtype": "bf16",
               "epoch_seconds": round(float(log["seconds"].median()), 2),
               "fit_seconds": round(time.perf_counter() - t, 1),
               "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                                    2),
               "val_spearman_after_5_epochs": res.metrics["val"].get("spearman")})


def _in_process(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune_bench.json")
    args = ap.parse_args(argv)
    from extract_bench import save_model

    model_dir = Path(tempfile.mkdtemp()) / "esm2_t12_35M"
    save_model("esm2_t12_35M", model_dir)
    configs = [{"method": "lora", "dtype": "bf16"}, {"method": "lora", "dtype": "fp32"},
               {"method": "full", "dtype": "bf16"}, {"method": "full", "dtype": "fp32"},
               {"method": "lora", "dtype": "bf16", "checkpointing": True},
               {"method": "lora", "dtype": "bf16", "lora_dropout": 0.1}]
    rows = []
    for config in configs:
        rows.append(_in_process(_measure, config, str(model_dir), args.steps))
        print(json.dumps(rows[-1]), flush=True)
    rows.append(_in_process(_cached_fit, str(model_dir)))
    print(json.dumps(rows[-1]), flush=True)
    fit_epoch = rows[-1]["epoch_seconds"]
    for r in rows[:-1]:
        r["fit_epochs_per_finetune_epoch"] = round(r["epoch_seconds"] / fit_epoch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": "esm2_t12_35M (random init)", "table": "mRFP",
                                    "threads": __import__("torch").get_num_threads(),
                                    "rows": rows}, indent=2))
    print("| method | dtype | checkpointing | LoRA dropout | s/step | train tokens/s | s/epoch "
          "| peak RSS GB | fit epochs per finetune epoch |")
    for r in rows:
        print(f"| {r['method']} | {r['dtype']} | {r.get('checkpointing', False)} | "
              f"{r.get('lora_dropout', 0.0) if r['method'] == 'lora' else ''} | "
              f"{r.get('step_seconds', '')} | {r.get('train_tokens_per_s', '')} | "
              f"{r['epoch_seconds']} | {r['peak_rss_gb']} | "
              f"{r.get('fit_epochs_per_finetune_epoch', 1)} |")


if __name__ == "__main__":
    main()
