"""How well do real language-model embeddings compress? (chooses the cache's codec)

Random numbers say nothing about this, so the embeddings come from a real pretrained model that
runs offline: AntiBERTy (antibody BERT, 8 layers, 512-dim), whose weights ship inside the
`antiberty` wheel (`pip install antiberty==0.1.3 --no-deps`, plus torch and transformers).
The inputs are random amino-acid sequences of 100-500 residues; the activations are the model's.

    python bench/compression_bench.py --out bench/results/compression.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def antiberty_embeddings(n: int, seed: int = 0) -> np.ndarray:
    import antiberty
    import torch
    from transformers import BertConfig, BertModel

    weights = Path(antiberty.__file__).parent / "trained_models" / "AntiBERTy_md_smooth"
    model = BertModel(BertConfig.from_pretrained(weights), add_pooling_layer=False).eval()
    state = torch.load(weights / "pytorch_model.bin", weights_only=True, map_location="cpu")
    model.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("bert.")},
                          strict=False)
    rng = np.random.default_rng(seed)
    out = []
    with torch.inference_mode():
        for _ in range(n):
            length = int(rng.integers(100, 500))
            ids = torch.tensor([[2, *rng.integers(5, 25, size=length), 3]])  # [CLS] aa.. [SEP]
            out.append(model(input_ids=ids).last_hidden_state[0, 1:-1].numpy())
    return np.concatenate(out).astype(np.float16)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import numcodecs

    x = antiberty_embeddings(args.n)
    chunk = x[: (1 << 20) // (x.shape[1] * 2)]  # the cache's 1 MiB inner chunk
    codecs = {
        "blosc lz4 bitshuffle (Layout(compressed=True))":
            numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE),
        "blosc lz4 byte-shuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
        "blosc zstd-1 byte-shuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE),
        "zstd-1": numcodecs.Zstd(1),
        "zstd-3": numcodecs.Zstd(3),
    }
    rows = []
    for name, codec in codecs.items():
        enc = codec.encode(x)
        t = time.perf_counter()
        for _ in range(5):
            codec.encode(chunk)
        t_enc = (time.perf_counter() - t) / 5
        c_enc = codec.encode(chunk)
        t = time.perf_counter()
        for _ in range(5):
            codec.decode(c_enc)
        t_dec = (time.perf_counter() - t) / 5
        rows.append({"codec": name, "ratio": len(enc) / x.nbytes,
                     "encode_MBps_1thread": chunk.nbytes / t_enc / 1e6,
                     "decode_MBps_1thread": chunk.nbytes / t_dec / 1e6})
        print(f"{name:40s} size {len(enc) / x.nbytes:.3f}x  encode {rows[-1]['encode_MBps_1thread']:6.0f} "
              f"MB/s  decode {rows[-1]['decode_MBps_1thread']:6.0f} MB/s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": "AntiBERTy (antiberty 0.1.3 wheel)",
                                        "tokens": int(x.shape[0]), "dim": int(x.shape[1]),
                                        "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
