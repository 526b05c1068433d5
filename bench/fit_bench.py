"""Epoch time of training from the cache vs re-running a frozen encoder every epoch.

What end-to-end training with a frozen backbone costs per epoch: the encoder's forward over every
training sequence plus the head's forward and backward. From the cache it is the head alone plus
reading the embeddings. Encoder: a random-init ESM-2 of the 150M size (640 dims, 30 layers;
throughput does not depend on weight values), run in bf16 and fp32; workload: mRFP-like
226-residue proteins; head: TextCNN (100 channels) with `--fusion none`.

    python bench/fit_bench.py --n 64 --out bench/results/fit.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.extract_bench import save_model  # noqa: E402
from biofuse.cache import EmbeddingCache  # noqa: E402
from biofuse.fusion.model import FusionModel, ModelConfig  # noqa: E402
from biofuse.modality import Modality  # noqa: E402
from biofuse.pipeline.encoders import EncoderRequest, build_encoder  # noqa: E402
from biofuse.pipeline.extract.compute import compute  # noqa: E402
from biofuse.pipeline.train.fit import length_batches  # noqa: E402
from biofuse.pipeline.train.inputs import ModalityTable, ModelInputs  # noqa: E402


def _loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((pred - y) ** 2).mean()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp())
    try:
        model_dir = save_model("esm2_t30_150M", work / "esm")
        rng = np.random.default_rng(0)
        seqs = ["M" + "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 225)) for _ in range(args.n)]
        y = torch.randn(args.n, 1)
        rows_all = np.arange(args.n)
        cfg = ModelConfig(("protein",), {"protein": 640}, {"protein": 3}, "none", "textcnn", 1)
        result = {"n": args.n, "residues": 226, "encoder": "ESM-2 150M size (random init)"}
        # the cache: embeddings computed once
        enc = build_encoder(EncoderRequest(model=str(model_dir), modality="protein", dtype="bf16"))
        store = EmbeddingCache(work / "cache", create=True).store(enc.fingerprint())
        from biofuse.cache import sequence_key

        t = time.perf_counter()
        compute(enc, [(sequence_key(s), s) for s in seqs], store, 1024)
        result["extract_once_s"] = time.perf_counter() - t
        tensors = ModelInputs({Modality.PROTEIN: ModalityTable.load(store, seqs)},
                              torch.full((args.n,), 226), {})

        def cached_epoch() -> float:
            torch.manual_seed(0)
            model = FusionModel(cfg)
            opt = torch.optim.Adam(model.parameters())
            t = time.perf_counter()
            for rows in length_batches(rows_all, tensors.grid.numpy(), 32,
                                       np.random.default_rng(0)):
                pred, _ = model(*tensors.batch(rows))
                loss = _loss(pred, y[torch.from_numpy(rows)])
                opt.zero_grad()
                loss.backward()
                opt.step()
            return time.perf_counter() - t

        def frozen_epoch(dtype: str) -> float:
            encoder = build_encoder(EncoderRequest(model=str(model_dir), modality="protein",
                                                   dtype=dtype))
            encoder.forward([encoder.tokenize(seqs[0])])  # weights loaded before timing
            torch.manual_seed(0)
            model = FusionModel(cfg)
            opt = torch.optim.Adam(model.parameters())
            t = time.perf_counter()
            for rows in length_batches(rows_all, tensors.grid.numpy(), 32,
                                       np.random.default_rng(0)):
                embs = []
                for i in rows:  # batches of 4 sequences x 228 tokens, within the CPU budget
                    embs.append(encoder.forward([encoder.tokenize(seqs[i])])[0])
                x = torch.from_numpy(np.stack(embs)).float()
                mask = torch.ones(x.shape[:2], dtype=torch.bool)
                pred, _ = model({"protein": x}, {"protein": mask},
                                {"protein": torch.ones(len(rows), dtype=torch.bool)},
                                torch.full((len(rows),), 226))
                loss = _loss(pred, y[torch.from_numpy(rows)])
                opt.zero_grad()
                loss.backward()
                opt.step()
            return time.perf_counter() - t

        def loading_only() -> float:
            """The data part of a cached epoch alone: gathering padded batches from the cache."""
            t = time.perf_counter()
            for rows in length_batches(rows_all, tensors.grid.numpy(), 32,
                                       np.random.default_rng(0)):
                tensors.tables["protein"].batch(torch.from_numpy(rows))
            return time.perf_counter() - t

        cached_epoch()
        result["cached_epoch_s"] = min(cached_epoch() for _ in range(3))
        result["data_loading_s"] = min(loading_only() for _ in range(3))
        result["data_loading_share"] = result["data_loading_s"] / result["cached_epoch_s"]
        for dtype in ("bf16", "fp32"):
            result[f"frozen_{dtype}_epoch_s"] = frozen_epoch(dtype)
            result[f"speedup_vs_frozen_{dtype}"] = (result[f"frozen_{dtype}_epoch_s"]
                                                    / result["cached_epoch_s"])
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
