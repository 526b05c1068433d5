"""[ridge] [logistic] [gbm] Probes: scikit-learn models on pooled embeddings, trained in seconds.

The quick baseline every results table needs (how bio_embeddings / biotrainer users first judge
an encoder, and CodonBERT's TF-IDF rows): each modality's per-token embeddings are pooled (mean,
or mean and max) and concatenated into one vector per row, then

- ``ridge``: per target, RidgeCV (the regularisation chosen by leave-one-out cross-validation on
  the training split, over ``alphas``);
- ``logistic``: LogisticRegressionCV (stratified folds of the training split, over ``cs``);
- ``gbm``: HistGradientBoosting, per target, early stopping on a part of the training split.

Everything a probe learns comes from the training rows: TF-IDF weights (``tfidf``, for the
composition encoders' k-mer frequencies), the standardisation, the regularisation. Saved
state is plain arrays (ridge, logistic), or skops bytes loaded back with an allowlist of types
(gbm); nothing is ever unpickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from biofuse.errors import ConfigError
from biofuse.options import check, option

POOLS = ("mean", "meanmax")
#: scikit-learn types a saved gbm may hold beyond skops' own trusted ones
GBM_TRUSTED_PREFIXES = ("sklearn.ensemble._hist_gradient_boosting.", "sklearn._loss.")


class Probe:
    """A scikit-learn head: ``fit(X, y, task, seed)`` on the training rows, ``raw(X)`` the
    outputs as the network heads give them (standardised values per target for regression,
    logits per class for classification), ``state()`` / ``from_state`` to save and load."""

    kind = "probe"
    Options: type

    def __init__(self, n_outputs: int, options=None):
        self.n_outputs = n_outputs
        self.options = options if options is not None else self.Options()

    def fit(self, X: np.ndarray, y: np.ndarray, task: str, seed: int) -> Probe:
        raise NotImplementedError

    def raw(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, n_outputs: int, options, state: dict[str, np.ndarray]) -> Probe:
        raise NotImplementedError


def _floats(values) -> bool:
    return len(values) > 0 and all(math.isfinite(v) and v > 0 for v in values)


@dataclass(frozen=True, kw_only=True)
class LinearOptions:
    """What the linear probes share."""

    prefix = ""
    pool: str = option("mean", "How each modality's tokens become one vector: their mean, or "
                       "mean and max side by side.", choices=POOLS)
    tfidf: bool = option(False, "TF-IDF-weight the features first (for k-mer and composition "
                         "frequencies; the weights are fitted on the training split).")


class _Features:
    """TF-IDF weights and standardisation, fitted on the training rows."""

    def fit(self, X: np.ndarray, tfidf: bool) -> np.ndarray:
        if tfidf:
            from sklearn.feature_extraction.text import TfidfTransformer

            self.idf = TfidfTransformer().fit(np.clip(X, 0, None)).idf_.astype(np.float64)
        else:
            self.idf = np.zeros(0)
        Z = self._weigh(X)
        self.mean, self.scale = Z.mean(0), Z.std(0)
        self.scale[self.scale == 0] = 1.0
        return (Z - self.mean) / self.scale

    def _weigh(self, X: np.ndarray) -> np.ndarray:
        if not len(self.idf):
            return X.astype(np.float64)
        Z = np.clip(X, 0, None) * self.idf
        norm = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / np.where(norm > 0, norm, 1.0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (self._weigh(X) - self.mean) / self.scale

    def state(self) -> dict[str, np.ndarray]:
        return {"idf": self.idf, "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> _Features:
        f = cls()
        f.idf, f.mean, f.scale = (np.asarray(state[k], dtype=np.float64)
                                  for k in ("idf", "mean", "scale"))
        return f


@dataclass(frozen=True, kw_only=True)
class RidgeOptions(LinearOptions):
    prefix = "ridge-"
    alphas: tuple[float, ...] = option(
        (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4), "Regularisation strengths tried, "
        "chosen by leave-one-out cross-validation on the training split.")

    def __post_init__(self) -> None:
        check(self, self.prefix)
        if not _floats(self.alphas):
            raise ConfigError(f"--ridge-alphas {self.alphas} must be positive numbers.",
                              "For example --ridge-alphas 0.1,1,10.")


class RidgeProbe(Probe):
    """Ridge regression per target (rows missing a target are left out of its fit)."""

    Options = RidgeOptions
    tasks = ("regression",)

    def fit(self, X, y, task, seed):
        from sklearn.linear_model import RidgeCV

        Z = self.features(X)
        self.coef = np.zeros((y.shape[1], Z.shape[1]))
        self.intercept, self.alpha = np.zeros(y.shape[1]), np.zeros(y.shape[1])
        for j in range(y.shape[1]):
            ok = ~np.isnan(y[:, j])
            model = RidgeCV(alphas=list(self.options.alphas)).fit(Z[ok], y[ok, j])
            self.coef[j], self.intercept[j], self.alpha[j] = model.coef_, model.intercept_, \
                model.alpha_
        return self

    def features(self, X):
        self._features = _Features()
        return self._features.fit(X, self.options.tfidf)

    def raw(self, X):
        return (self._features(X) @ self.coef.T + self.intercept).astype(np.float32)

    def state(self):
        return {**self._features.state(), "coef": self.coef, "intercept": self.intercept,
                "alpha": self.alpha}

    @classmethod
    def from_state(cls, n_outputs, options, state):
        probe = cls(n_outputs, options)
        probe._features = _Features.from_state(state)
        probe.coef, probe.intercept = np.asarray(state["coef"]), np.asarray(state["intercept"])
        probe.alpha = np.asarray(state["alpha"])
        return probe


@dataclass(frozen=True, kw_only=True)
class LogisticOptions(LinearOptions):
    prefix = "logistic-"
    cs: tuple[float, ...] = option(
        (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), "Inverse regularisation strengths tried, chosen "
        "by stratified cross-validation on the training split.")

    def __post_init__(self) -> None:
        check(self, self.prefix)
        if not _floats(self.cs):
            raise ConfigError(f"--logistic-cs {self.cs} must be positive numbers.",
                              "For example --logistic-cs 0.1,1,10.")


class LogisticProbe(RidgeProbe):
    """Logistic regression over the classes (multinomial), regularisation chosen by CV."""

    Options = LogisticOptions
    tasks = ("classification",)

    def fit(self, X, y, task, seed):
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        Z = self.features(X)
        ok = y >= 0
        counts = np.bincount(y[ok], minlength=self.n_outputs)
        folds = int(min(5, counts[counts > 0].min()))
        model = (LogisticRegressionCV(Cs=list(self.options.cs), cv=folds, max_iter=2000,
                                      random_state=seed) if folds >= 2
                 else LogisticRegression(max_iter=2000, random_state=seed))
        model.fit(Z[ok], y[ok])
        classes = list(model.classes_)
        coef, intercept = model.coef_, model.intercept_
        if len(classes) == 2:  # one decision function: the logits of the two are (0, z)
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
        self.coef = np.full((self.n_outputs, Z.shape[1]), 0.0)
        self.intercept = np.full(self.n_outputs, -1e4)  # a class never seen: never predicted
        self.coef[classes], self.intercept[classes] = coef, intercept
        self.alpha = np.atleast_1d(getattr(model, "C_", [1.0])).astype(np.float64)
        return self


@dataclass(frozen=True, kw_only=True)
class GBMOptions:
    prefix = "gbm-"
    pool: str = option("mean", "How each modality's tokens become one vector: their mean, or "
                       "mean and max side by side.", choices=POOLS)
    max_iter: int = option(300, "Boosting rounds at most (early stopping on 10% of the "
                           "training split decides).", min=1, max=100_000)
    learning_rate: float = option(0.1, "Shrinkage of each tree.", above=0, max=1)
    max_leaf_nodes: int = option(31, "Leaves per tree.", min=2, max=4096)

    def __post_init__(self) -> None:
        check(self, self.prefix)


class GBMProbe(Probe):
    """Histogram gradient boosting (per target for regression)."""

    Options = GBMOptions
    tasks = ("regression", "classification")

    def _kwargs(self, seed: int) -> dict:
        o = self.options
        return {"max_iter": o.max_iter, "learning_rate": o.learning_rate,
                "max_leaf_nodes": o.max_leaf_nodes, "early_stopping": True,
                "validation_fraction": 0.1, "random_state": seed}

    def fit(self, X, y, task, seed):
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        self.task = task
        if task == "classification":
            ok = y >= 0
            self.models = [HistGradientBoostingClassifier(**self._kwargs(seed)).fit(X[ok], y[ok])]
        else:
            self.models = []
            for j in range(y.shape[1]):
                ok = ~np.isnan(y[:, j])
                self.models.append(HistGradientBoostingRegressor(**self._kwargs(seed))
                                   .fit(X[ok], y[ok, j]))
        return self

    def raw(self, X):
        if self.task == "regression":
            return np.stack([m.predict(X) for m in self.models], axis=1).astype(np.float32)
        model = self.models[0]
        scores = model.decision_function(X)
        scores = np.stack([np.zeros_like(scores), scores], 1) if scores.ndim == 1 else scores
        out = np.full((len(X), self.n_outputs), -1e4, dtype=np.float32)
        out[:, list(model.classes_)] = scores
        return out

    def state(self):
        import skops.io

        data = skops.io.dumps(self.models)
        return {"skops": np.frombuffer(data, dtype=np.uint8).copy(),
                "classification": np.array([self.task == "classification"])}

    @classmethod
    def from_state(cls, n_outputs, options, state):
        import skops.io

        data = np.asarray(state["skops"], dtype=np.uint8).tobytes()
        untrusted = skops.io.get_untrusted_types(data=data)
        refused = [t for t in untrusted if not t.startswith(GBM_TRUSTED_PREFIXES)]
        if refused:
            raise ConfigError(f"The saved gradient-boosting probe holds types biofuse does not "
                              f"load ({', '.join(refused[:3])}).",
                              "biofuse loads only the gradient-boosting models it saved; train "
                              "the probe again with `biofuse fit --head gbm`.")
        probe = cls(n_outputs, options)
        probe.models = skops.io.loads(data, trusted=untrusted)
        probe.task = "classification" if bool(np.asarray(state["classification"])[0]) \
            else "regression"
        return probe


PROBES: dict[str, type[Probe]] = {"ridge": RidgeProbe, "logistic": LogisticProbe,
                                  "gbm": GBMProbe}


def load_probe(name: str, n_outputs: int, options: dict, state: dict) -> Probe:
    """The probe ``name`` from its saved options and state (tensors or arrays): plain arrays,
    or for gbm skops bytes loaded with an allowlist of types."""
    from biofuse.options import from_dict

    cls = PROBES[name]
    arrays = {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}
    return cls.from_state(n_outputs, from_dict(cls.Options, options, cls.Options.prefix), arrays)
