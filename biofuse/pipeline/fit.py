"""`biofuse fit`: train a fusion model on cached embeddings; write an auditable run directory.

BioLangFusion's settings by default: Adam, ReduceLROnPlateau (patience 5), early stopping on the
validation metric (patience 20), at most 500 epochs, batches of 32 drawn from length buckets.
MSE for regression (targets standardised on the training split; ``log1p`` optional), cross-
entropy for classification. For ``mil`` the entropy weight is chosen on validation from a small
set that includes 0. The test split is evaluated once, at the end, with the selected model.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from biofuse import __version__
from biofuse.cache import EmbeddingCache, sequence_key
from biofuse.errors import ConfigError, DataError
from biofuse.fusion import FUSIONS
from biofuse.fusion.model import FusionModel, ModelConfig
from biofuse.heads import HEADS
from biofuse.pipeline import dogma
from biofuse.pipeline.data import MODALITY_COLUMN, Dataset
from biofuse.pipeline.embeddings import ModalityTable, find_store
from biofuse.pipeline.encoders import DEFAULTS
from biofuse.pipeline.metrics import classification_metrics, regression_metrics

COLUMN = MODALITY_COLUMN


@dataclass(frozen=True)
class FitConfig:
    fusion: str = "mil"
    modalities: tuple[str, ...] = ("dna", "rna", "protein")
    encoders: dict = field(default_factory=dict)  # modality -> encoder name or fingerprint id
    head: str = "textcnn"
    seed: int = 0
    epochs: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    patience: int = 20
    lr_patience: int = 5
    log1p: bool = False
    entropy_weights: tuple[float, ...] = (0.0, 0.01, 0.1)
    fusion_options: dict = field(default_factory=dict)
    head_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ConfigError(f"Unknown fusion {self.fusion!r}.",
                              f"Use one of: {', '.join(sorted(FUSIONS))}.")
        if self.head not in HEADS:
            raise ConfigError(f"Unknown head {self.head!r}.",
                              f"Use one of: {', '.join(sorted(HEADS))}.")
        bad = [m for m in self.modalities if m not in COLUMN]
        if bad or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"--modalities {','.join(self.modalities)} is not a set of "
                              "dna, rna, protein.", "For example --modalities dna,rna,protein.")
        if self.fusion == "none" and len(self.modalities) != 1:
            raise ConfigError("--fusion none probes one modality.",
                              "Pass one modality, e.g. --modalities protein.")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"Unknown optimizer {self.optimizer!r}.", "Use adam or adamw.")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("--epochs, --batch-size and --lr must be positive.",
                              "The defaults are 500, 32 and 0.001.")

    def encoder(self, modality: str) -> str:
        return self.encoders.get(modality, DEFAULTS[modality])


# ------------------------------------------------------------------------ data on the grid

@dataclass
class Tensors:
    tables: dict[str, ModalityTable]
    grid: torch.Tensor  # [N] codons per row
    y: torch.Tensor  # [N, targets] float (standardised) or [N] long (classes)
    fingerprints: dict[str, dict]


def load_tensors(ds: Dataset, cfg: FitConfig, cache_root, aligned: bool) -> Tensors:
    cache = EmbeddingCache(cache_root)
    frame = ds.frame
    tables, fps = {}, {}
    for m in cfg.modalities:
        seqs = frame[COLUMN[m]].to_list()
        if not any(seqs):
            raise DataError(f"No row of {ds.spec.path} has a {m} sequence.",
                            "Drop it from --modalities, or give the dataset an mRNA/CDS column "
                            "from which it can be derived.")
        keys = [sequence_key(s) for s in seqs if s]
        hint = (f"biofuse extract {ds.spec.path} --modality {m} --model {cfg.encoder(m)} "
                f"--cache {cache.root}")
        store = find_store(cache, m, cfg.encoder(m), keys, hint)
        nt = int(store.fingerprint.extra.get("nt_per_token", 3))
        tables[m] = ModalityTable.load(store, seqs, pool=3 if aligned and nt == 1 else 1)
        fps[m] = {"store": store.id, "fingerprint": store.fingerprint.to_dict()}
    grid = torch.tensor([dogma.n_codons(len(r)) if r else (len(p) if p else 0)
                         for r, p in zip(frame["mrna"].to_list(), frame["protein"].to_list())])
    if aligned and int(grid.min()) == 0:
        raise DataError("Some rows have neither an mRNA nor a protein, so they have no codon "
                        "grid for an aligned fusion.",
                        "Use --fusion seqconcat or isoformer, which need no grid.")
    return Tensors(tables, grid, torch.empty(0), fps)


# ------------------------------------------------------------------------ targets

@dataclass
class Targets:
    task: str
    names: list[str]
    classes: list[str] | None
    mean: list[float] | None = None
    std: list[float] | None = None
    log1p: bool = False

    def encode(self, y: np.ndarray) -> torch.Tensor:
        if self.task == "classification":
            return torch.from_numpy(y[:, 0].astype(np.int64))
        y = np.log1p(y) if self.log1p else y
        return torch.from_numpy(((y - np.array(self.mean)) / np.array(self.std)).astype(np.float32))

    def decode(self, pred: np.ndarray) -> np.ndarray:
        y = pred * np.array(self.std) + np.array(self.mean)
        return np.expm1(y) if self.log1p else y


def make_targets(ds: Dataset, cfg: FitConfig) -> Targets:
    if not ds.label_names:
        raise DataError(f"{ds.spec.path} has no label column, so there is nothing to fit.",
                        "Name the target with --label-col.")
    y = ds.labels()
    train = (ds.frame["split"] == "train").to_numpy()
    if ds.task == "classification":
        return Targets("classification", list(ds.label_names), list(ds.classes))
    if cfg.log1p and np.nanmin(y) <= -1:
        raise DataError("--log1p needs targets above -1.", "Drop --log1p for these labels.")
    yt = np.log1p(y[train]) if cfg.log1p else y[train]
    mean, std = np.nanmean(yt, 0), np.nanstd(yt, 0)
    return Targets("regression", list(ds.label_names), None, mean.tolist(),
                   np.where(std > 0, std, 1.0).tolist(), cfg.log1p)


# ------------------------------------------------------------------------ training loop

def length_batches(rows: np.ndarray, grid: np.ndarray, size: int,
                   rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of rows of similar length (little padding); shuffled order when ``rng``."""
    order = rows[np.argsort(grid[rows], kind="stable")]
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _forward(model: FusionModel, t: Tensors, rows: np.ndarray):
    r = torch.from_numpy(rows)
    feats, masks, present = {}, {}, {}
    for m, table in t.tables.items():
        feats[m], masks[m], present[m] = table.batch(r)
    return model(feats, masks, present, t.grid[r])


def _loss(pred: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        return torch.nn.functional.cross_entropy(pred, y, ignore_index=-1)
    ok = ~torch.isnan(y)
    return ((pred - torch.nan_to_num(y)) ** 2)[ok].mean()


def predict_rows(model: FusionModel, t: Tensors, rows: np.ndarray, batch_size: int):
    """Raw outputs [N, outputs] and per-row modality weights (MIL) for ``rows``, in order."""
    model.eval()
    outs, weights = [], {}
    with torch.no_grad():
        for b in range(0, len(rows), batch_size):
            pred, fused = _forward(model, t, rows[b:b + batch_size])
            outs.append(pred.numpy())
            for m, w in fused.weights.items():
                weights.setdefault(m, []).append(w.numpy())
    out = np.concatenate(outs) if outs else np.zeros((0, 1))
    return out, {m: np.concatenate(w) for m, w in weights.items()}


def evaluate(model, t: Tensors, rows: np.ndarray, targets: Targets, y_raw: np.ndarray,
             batch_size: int) -> tuple[dict, np.ndarray]:
    out, _ = predict_rows(model, t, rows, batch_size)
    if targets.task == "classification":
        return classification_metrics(y_raw[rows, 0].astype(int), out.argmax(1),
                                      len(targets.classes)), out
    return regression_metrics(y_raw[rows], targets.decode(out), targets.names), out


def selection_score(metrics: dict, task: str) -> float:
    v = metrics["macro_f1" if task == "classification" else "spearman"]
    return -math.inf if v is None or math.isnan(v) else v


def train_one(model_cfg: ModelConfig, t: Tensors, targets: Targets, y_raw: np.ndarray,
              splits: dict[str, np.ndarray], cfg: FitConfig, log: list[dict],
              entropy_weight: float) -> tuple[FusionModel, dict, int]:
    """Train one model; returns the best (by validation metric) model, its val metrics, epoch."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = FusionModel(model_cfg)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=cfg.lr_patience)
    grid = t.grid.numpy()
    best, best_state, best_epoch, best_val, stale = -math.inf, None, 0, {}, 0
    val_rows = splits["val"] if len(splits["val"]) else splits["train"]
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, n = 0.0, 0
        start = time.perf_counter()
        for rows in length_batches(splits["train"], grid, cfg.batch_size, rng):
            pred, fused = _forward(model, t, rows)
            loss = _loss(pred, t.y[torch.from_numpy(rows)], targets.task)
            if fused.aux_loss is not None:
                loss = loss + fused.aux_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach().item() * len(rows)
            n += len(rows)
        val, _ = evaluate(model, t, val_rows, targets, y_raw, cfg.batch_size)
        score = selection_score(val, targets.task)
        sched.step(score if math.isfinite(score) else -1e9)
        log.append({"entropy_weight": entropy_weight, "epoch": epoch, "train_loss": total / n,
                    "val_score": score, "lr": opt.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - start})
        if score > best:
            best, best_epoch, best_val, stale = score, epoch, val, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, best_val, best_epoch


def fit(ds: Dataset, cfg: FitConfig, cache_root, out: Path, echo=lambda s: None) -> dict:
    """Train, select, test once, and write the run directory; returns metrics.json's content."""
    fusion_cls = FUSIONS[cfg.fusion]
    torch.use_deterministic_algorithms(True, warn_only=True)
    t = load_tensors(ds, cfg, cache_root, fusion_cls.aligned)
    targets = make_targets(ds, cfg)
    y_raw = ds.labels()
    t.y = targets.encode(y_raw)
    split = ds.frame["split"].to_numpy()
    splits = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    if not len(splits["train"]):
        raise DataError("The training split is empty.", "Check the split column or fractions.")
    n_out = len(targets.classes) if targets.task == "classification" else len(targets.names)
    model_cfg = ModelConfig(cfg.modalities, {m: t.tables[m].dim for m in cfg.modalities},
                            {m: t.tables[m].nt_per_token for m in cfg.modalities}, cfg.fusion,
                            cfg.head, n_out, dict(cfg.fusion_options), dict(cfg.head_options))
    weights = cfg.entropy_weights if cfg.fusion == "mil" else (None,)
    log: list[dict] = []
    search, best = [], None
    for w in weights:
        mc = model_cfg if w is None else ModelConfig(**{
            **model_cfg.__dict__, "fusion_options": {**model_cfg.fusion_options,
                                                     "entropy_weight": w}})
        model, val, epoch = train_one(mc, t, targets, y_raw, splits, cfg, log, w or 0.0)
        score = selection_score(val, targets.task)
        search.append({"entropy_weight": w, "val_score": score, "best_epoch": epoch})
        echo(f"{cfg.fusion}" + (f" (entropy weight {w})" if w is not None else "")
             + f": best validation {'macro-F1' if targets.task == 'classification' else 'Spearman'}"
             f" {score:.4f} at epoch {epoch}")
        if best is None or score > best[0]:
            best = (score, model, mc, val, epoch, w)
    _, model, model_cfg, val, epoch, chosen = best
    test, _ = evaluate(model, t, splits["test"], targets, y_raw, cfg.batch_size) \
        if len(splits["test"]) else ({}, None)
    metrics = {"task": targets.task, "val": val, "test": test, "best_epoch": epoch,
               "entropy_weight": chosen, "search": search if len(search) > 1 else None}
    write_run(out, ds, cfg, model_cfg, model, t, targets, y_raw, metrics, log)
    return metrics


# ------------------------------------------------------------------------ the run directory

def write_run(out: Path, ds: Dataset, cfg: FitConfig, model_cfg: ModelConfig, model, t: Tensors,
              targets: Targets, y_raw: np.ndarray, metrics: dict, log: list[dict]) -> None:
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    config = {"biofuse_version": __version__, "data": asdict(ds.spec),
              "dataset_hash": ds.hash, "fit": asdict(cfg), "model": model_cfg.to_dict(),
              "encoders": t.fingerprints, "targets": asdict(targets)}
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    torch.save(model.state_dict(), out / "model.pt")
    rows = np.arange(ds.frame.height)
    raw, weights = predict_rows(model, t, rows, cfg.batch_size)
    table = {"id": ds.frame["id"].to_list(), "split": ds.frame["split"].to_list()}
    table.update(prediction_columns(raw, targets, y_raw))
    pl.DataFrame(table).write_parquet(out / "predictions.parquet")
    if weights:
        pl.DataFrame({"id": table["id"], "split": table["split"]} |
                     {f"weight_{m}": w for m, w in weights.items()}
                     ).write_parquet(out / "attention.parquet")
    pl.DataFrame(log).write_csv(out / "train_log.csv")


def prediction_columns(raw: np.ndarray, targets: Targets, y_raw: np.ndarray | None) -> dict:
    cols: dict = {}
    if targets.task == "classification":
        probs = torch.softmax(torch.from_numpy(raw), -1).numpy()
        if y_raw is not None:
            cols["y"] = [targets.classes[int(v)] if v >= 0 else None for v in y_raw[:, 0]]
        cols["pred"] = [targets.classes[i] for i in raw.argmax(1)]
        cols.update({f"prob_{c}": probs[:, i] for i, c in enumerate(targets.classes)})
        return cols
    pred = targets.decode(raw)
    for j, name in enumerate(targets.names):
        if y_raw is not None:
            cols[f"y_{name}"] = y_raw[:, j]
        cols[f"pred_{name}"] = pred[:, j]
    return cols
