"""The training loop's selection: which epoch's weights are kept, when it stops, and what a
validation window changes."""

from __future__ import annotations

import math

import polars as pl
import pytest

torch = pytest.importorskip("torch")

from biofuse.pipeline.train.trainer import CsvLog, EarlyStopping, Trainer  # noqa: E402

# a noisy validation curve: one lucky epoch (2), then a stretch of good ones (5-7)
CURVE = [0.50, 0.90, 0.40, 0.60, 0.80, 0.82, 0.81, 0.55, 0.50, 0.45, 0.40, 0.35]


def trainer_for(curve, window, patience=100, callbacks=(), max_epochs=None):
    """A one-weight model whose weight counts the epochs trained, validated by ``curve``."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    scores = iter(curve)

    def step(m, batch):  # d(loss)/d(weight) = -1: the weight grows by 1 per epoch
        return -m.weight.sum(), len(batch)

    return Trainer(model, opt, batches=lambda epoch: [(0,)], step=step,
                   validate=lambda m: next(scores), max_epochs=max_epochs or len(curve),
                   callbacks=[EarlyStopping(patience), *callbacks], window=window)


def scripted(curve, window, patience=100):
    trainer = trainer_for(curve, window, patience)
    return trainer, trainer.run()


def test_window_one_keeps_the_best_single_epoch():
    _, result = scripted(CURVE, window=1)
    assert result.best_epoch == 2 and result.best_score == pytest.approx(0.90)
    assert result.model.weight.item() == pytest.approx(2.0)  # the weights of epoch 2


def test_a_window_keeps_the_end_of_the_best_stretch_not_the_lucky_epoch():
    _, result = scripted(CURVE, window=3)
    means = [sum(CURVE[max(0, i - 2):i + 1]) / len(CURVE[max(0, i - 2):i + 1])
             for i in range(len(CURVE))]
    best = max(range(len(CURVE)), key=means.__getitem__) + 1
    assert best == 7  # epochs 5-7: 0.80, 0.82, 0.81
    assert result.best_epoch == best and result.best_score == pytest.approx(means[best - 1])
    assert result.model.weight.item() == pytest.approx(float(best))


def test_early_stopping_counts_epochs_without_a_better_window_mean():
    # window 1: the spike at epoch 2 is never beaten, so patience 4 stops at epoch 6
    trainer, result = scripted(CURVE, window=1, patience=4)
    assert trainer.epoch == 6
    # window 3: the means keep rising until epoch 7, then fall: stops at epoch 11
    trainer, result = scripted(CURVE, window=3, patience=4)
    assert (result.best_epoch, trainer.epoch) == (7, 11)


def test_undefined_scores_count_as_no_progress_inside_a_window():
    curve = [0.5, float("nan"), 0.9, 0.9, 0.9, 0.1]
    _, result = scripted(curve, window=2)
    assert result.best_epoch == 4 and math.isfinite(result.best_score)


def test_the_window_survives_a_resume_and_the_log_shows_what_selection_saw(tmp_path):
    log = tmp_path / "log.csv"
    first = trainer_for(CURVE[:6], window=3, callbacks=[CsvLog(log)])
    first.run()
    # a second trainer built the same way continues from the first's state
    again = trainer_for(CURVE[6:], window=3, callbacks=[CsvLog(log)], max_epochs=len(CURVE))
    again.load_state(first.state())
    result = again.run()
    # epoch 7's mean (0.81) includes epochs 5 and 6, whose scores came from the saved state
    assert (result.best_epoch, result.best_score) == (7, pytest.approx(0.81))
    assert result.model.weight.item() == pytest.approx(7.0)
    rows = pl.read_csv(log)
    assert rows["val_selection"].to_list() == pytest.approx(
        [0.50, 0.70, 0.60, 0.6333333, 0.60, 0.74, 0.81, 0.7266667, 0.62, 0.50, 0.45, 0.4],
        abs=1e-6)
