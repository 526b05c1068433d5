"""The model `biofuse finetune` trains: a transformer encoder (whole, or with LoRA adapters) whose
per-token hidden states feed a biofuse head, and the sequences it reads, cut for the encoder.

``Tokens`` is a dataset's sequences of one modality as the encoder's token ids, with long
sequences truncated or cut into overlapping windows (the extractor's rule, ``encoders.windows``).
``EncoderHead.forward(tokens, rows)`` runs every window of the rows through the encoder, strips
the special tokens, stitches windows back to one state per token (``windows.stitch`` on torch
tensors, so gradients flow through), pads the rows and applies the head. ``micro_batches`` cuts
rows into batches whose padded windows fit a token budget.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from biofuse.errors import ConfigError, DataError
from biofuse.pipeline.encoders import Encoder, autocast
from biofuse.pipeline.encoders.windows import stitch, windows


@dataclass
class Tokens:
    """Token ids of every row: ``units[r]`` the row's windows (one unless windowed), ``spans[r]``
    their [start, end) in the row's ids, ``lengths[r]`` the row's ids."""

    units: list[list[list[int]]]
    spans: list[list[tuple[int, int]]]
    lengths: np.ndarray
    truncated: int = 0
    windowed: int = 0

    @classmethod
    def of(cls, encoder: Encoder, sequences: list[str | None], long_policy: str, overlap: int,
           what: str) -> Tokens:
        missing = sum(not s for s in sequences)
        if missing:
            raise DataError(f"{missing} of {len(sequences)} rows of {what} have no "
                            f"{encoder.info.modality} sequence to finetune on.",
                            "Remove those rows from the table, or give it the column the "
                            "sequence is derived from (--sequence-col).")
        context = encoder.context
        units, spans, lengths, truncated, windowed = [], [], [], 0, 0
        for seq in sequences:
            ids = encoder.tokenize(encoder.prepare(seq))
            if len(ids) > context:
                if long_policy == "truncate":
                    ids, truncated = ids[:context], truncated + 1
                else:
                    windowed += 1
            row_spans = windows(len(ids), context, min(overlap, context - 1))
            units.append([ids[a:b] for a, b in row_spans])
            spans.append(row_spans)
            lengths.append(len(ids))
        return cls(units, spans, np.asarray(lengths, dtype=np.int64), truncated, windowed)

    def cost(self, row: int, specials: int) -> tuple[int, int]:
        """(windows, widest window with its special tokens) of ``row``."""
        return len(self.units[row]), max(len(u) for u in self.units[row]) + specials


def micro_batches(tokens: Tokens, rows: np.ndarray, budget: int, specials: int
                  ) -> list[np.ndarray]:
    """``rows`` (in the given order) cut into consecutive batches whose padded windows (windows x
    widest) stay within ``budget`` tokens; a row over budget goes alone."""
    out, current, n_units, widest = [], [], 0, 0
    for r in rows:
        k, w = tokens.cost(int(r), specials)
        if current and (n_units + k) * max(widest, w) > budget:
            out.append(np.asarray(current, dtype=np.int64))
            current, n_units, widest = [], 0, 0
        current.append(int(r))
        n_units, widest = n_units + k, max(widest, w)
    if current:
        out.append(np.asarray(current, dtype=np.int64))
    return out


def epoch_steps(tokens: Tokens, rows: np.ndarray, batch_size: int, budget: int, specials: int,
                rng: np.random.Generator) -> list[list[np.ndarray]]:
    """One epoch's optimisation steps: rows shuffled, then sorted by length (ties stay
    shuffled) so a step pads little; ``batch_size`` rows per step, each step cut into
    micro-batches within the token budget (their gradients are accumulated); steps in random
    order."""
    shuffled = rows[rng.permutation(len(rows))]
    ordered = shuffled[np.argsort(tokens.lengths[shuffled], kind="stable")]
    steps = [micro_batches(tokens, ordered[i:i + batch_size], budget, specials)
             for i in range(0, len(ordered), batch_size)]
    return [steps[i] for i in rng.permutation(len(steps))]


class EncoderHead(nn.Module):
    """``network`` (the encoder's torch module, possibly wrapped by peft) then ``head``."""

    def __init__(self, encoder: Encoder, network: nn.Module, head: nn.Module):
        super().__init__()
        self.network, self.head = network, head
        self.encoder = encoder  # not a module: how to pad ids and read hidden states
        self.device = torch.device(encoder.request.device)

    def hidden_states(self, tokens: Tokens, rows: np.ndarray):
        """Per-token states [B, T, D] of ``rows`` (windows stitched) and their mask [B, T]."""
        units = [u for r in rows for u in tokens.units[int(r)]]
        input_ids, mask = self.encoder.pad(units)
        padded = bool((mask == 0).any())
        hidden = self.encoder.hidden(self.network, input_ids.to(self.device),
                                     mask.to(self.device) if padded else None)
        per_unit = [hidden[i, 1:1 + len(u)] for i, u in enumerate(units)]  # specials stripped
        states, k = [], 0
        for r in rows:
            n = len(tokens.units[int(r)])
            states.append(stitch(per_unit[k:k + n], tokens.spans[int(r)],
                                 int(tokens.lengths[int(r)]), cat=torch.cat))
            k += n
        lengths = torch.tensor([len(s) for s in states], device=self.device)
        x = nn.utils.rnn.pad_sequence(states, batch_first=True)
        return x, torch.arange(x.shape[1], device=self.device)[None, :] < lengths[:, None]

    def forward(self, tokens: Tokens, rows: np.ndarray) -> torch.Tensor:
        x, mask = self.hidden_states(tokens, rows)
        x = x * mask[..., None].to(x.dtype)  # padded positions exactly zero for the head
        return self.head(x, mask)


def lora_network(encoder: Encoder, network: nn.Module, rank: int, alpha: float,
                 dropout: float) -> nn.Module:
    """``network`` with LoRA adapters on the encoder's target modules (peft); only the adapters
    train, the base weights are frozen."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("--method lora needs the peft package, which is not installed.",
                          "pip install 'biofuse-ml[finetune]', or use --method full.") from None
    if encoder.lora_targets is None:
        raise ConfigError(f"{encoder.info.name} has no LoRA target modules.",
                          "Use --method full.")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=encoder.lora_targets, bias="none")
    with warnings.catch_warnings():  # peft asks transformers a deprecated checkpointing question
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(network, config)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters())}


def token_outputs(model: EncoderHead, tokens: Tokens, rows: np.ndarray, budget: int,
                 dtype: str) -> np.ndarray:
    """Raw outputs [len(rows), outputs] of ``rows``, in order (no gradients)."""
    model.eval()
    specials = model.encoder.n_specials
    order = rows[np.argsort(tokens.lengths[rows], kind="stable")]
    position = {int(r): i for i, r in enumerate(rows)}
    out = None
    with torch.no_grad(), autocast(dtype, model.encoder.request.device):
        for batch in micro_batches(tokens, order, budget, specials):
            pred = model(tokens, batch).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(rows), pred.shape[1]), dtype=np.float32)
            out[[position[int(r)] for r in batch]] = pred
    return out if out is not None else np.zeros((0, 1), np.float32)


def tokens_of(tokens: Tokens, rows: np.ndarray) -> int:
    return int(sum(tokens.lengths[int(r)] for r in rows))

