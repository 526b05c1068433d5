"""RNA-FM (Chen et al. 2022): a 12-layer, 640-dim BERT-style model over single nucleotides,
through the `multimolecule` package (``pip install 'biofuse-ml[rnafm]'``), which publishes its
weights as ``multimolecule/rnafm`` and implements the model in PyTorch (no remote code).
"""

from __future__ import annotations

import numpy as np

from biofuse.modality import Modality
from biofuse.pipeline.encoders.base import (
    BERT_LORA_TARGETS,
    Encoder,
    EncoderInfo,
    EncoderRequest,
    torch_dtype,
)
from biofuse.pipeline.encoders.hub import (
    ModelError,
    local_or_hub,
    read_config,
    resolve_model_dir,
    weights_hash,
)


def _multimolecule():
    try:
        import multimolecule
    except ImportError as exc:
        raise ModelError("RNA-FM needs the multimolecule package, which is not installed.",
                         "pip install 'biofuse-ml[rnafm]', or choose another --model "
                         "(e.g. onehot).") from exc
    return multimolecule


class RnaFmEncoder(Encoder):
    def __init__(self, request: EncoderRequest, info: EncoderInfo | None):
        import torch

        mm = _multimolecule()
        self.request = request
        source = info.source if info else local_or_hub(request.model)
        self.model_dir, revision = resolve_model_dir(source)
        cfg = read_config(self.model_dir)
        n_layers = int(cfg.get("num_hidden_layers", 12))
        base = info or EncoderInfo(str(source), Modality.RNA, "rnafm", str(source), 640, 12, 1,
                                   1022)
        self.info = EncoderInfo(**{**base.__dict__, "dim": int(cfg.get("hidden_size", 640)),
                                   "n_layers": n_layers,
                                   "context": int(cfg.get("max_position_embeddings", 1026)) - 2})
        if not 0 <= self.resolved_layer() <= n_layers:
            raise ModelError(f"--layer {request.layer} is out of range for {source}, which has "
                             f"{n_layers} layers.", f"Use 0..{n_layers}, or -1 for the last.")
        self.revision = revision if revision != "local" else weights_hash(self.model_dir)
        self.tokenizer = mm.RnaTokenizer.from_pretrained(str(self.model_dir))
        self.tokenizer_settings = {"tokenizer": "multimolecule.RnaTokenizer",
                                   "vocab_size": len(self.tokenizer), "cls": True, "eos": True}
        self.n_specials = 2
        self.device = torch.device(request.device)

    def weights_id(self) -> str:
        return self.revision

    def load(self):
        mm = _multimolecule()
        try:  # PyTorch's fused attention where multimolecule supports it (eager otherwise)
            model = mm.RnaFmModel.from_pretrained(str(self.model_dir), add_pooling_layer=False,
                                                  attn_implementation="sdpa")
        except (ValueError, TypeError, ImportError):
            model = mm.RnaFmModel.from_pretrained(str(self.model_dir), add_pooling_layer=False)
        return model.to(self.device, dtype=torch_dtype(self.request.dtype)).eval()

    def tokenize(self, sequence: str) -> list[int]:
        return self.tokenizer(sequence, add_special_tokens=False)["input_ids"]

    def pad(self, batch: list[list[int]]):
        import torch

        tok = self.tokenizer
        width = max(len(ids) for ids in batch) + 2
        input_ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            row = [tok.cls_token_id, *ids, tok.eos_token_id]
            input_ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        return input_ids, mask

    def hidden(self, network, input_ids, mask):
        layer = self.resolved_layer()
        out = network(input_ids=input_ids, attention_mask=mask,
                      output_hidden_states=layer < self.info.n_layers)
        return out.last_hidden_state if layer == self.info.n_layers else out.hidden_states[layer]

    def forward(self, batch: list[list[int]]) -> list[np.ndarray]:
        import torch

        input_ids, mask = self.pad(batch)
        padded = bool((mask == 0).any())  # no padding, no mask: the fused attention kernel
        with torch.inference_mode():
            hidden = self.hidden(self.model, input_ids.to(self.device),
                                 mask.to(self.device) if padded else None)
            hidden = hidden.float().cpu().numpy()
        return [hidden[i, 1:1 + len(ids)] for i, ids in enumerate(batch)]

    lora_targets = BERT_LORA_TARGETS

    def save_pretrained(self, network, path) -> None:
        """multimolecule's own format (config.json, model.safetensors) and the tokenizer."""
        network.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
