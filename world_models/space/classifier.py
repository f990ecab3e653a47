"""A linear z_what classifier kept as numbers in JSON: loading it runs no code.

The few-shot classifiers of the SPACE-Time evaluation (ridge regressions of ``z_what`` onto the object
labels) are linear: ``label = classes[argmax(z_what @ coef.T + intercept)]``. They are saved as
``z_what-classifier_{n}.json``. A scikit-learn classifier pickled with ``joblib`` (``*.joblib.pkl``,
written by older versions) unpickles on load, which runs any code its author put in it, so it is read
only with ``trust_pickle=True``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

PICKLE_RISK = (
    "a joblib/pickle file runs any code its author put in it when it is loaded; load it only if you trust where "
    "it came from (trust_pickle=True), or use the z_what-classifier_{n}.json that learned-envs evaluate writes"
)


class ClassifierError(ValueError):
    """A classifier file that cannot be used; the message names it and says why."""


class LinearClassifier:
    """``predict(features (N, D)) -> (N,)`` labels; ``coef`` (C, D), ``intercept`` (C,), ``classes`` (C,)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: list[Any]) -> None:
        self.coef_ = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        self.intercept_ = np.asarray(intercept, dtype=np.float64).reshape(-1)
        self.classes_ = np.asarray(classes)
        rows = len(self.classes_) if len(self.classes_) > 2 else 1  # scikit-learn keeps one row for two classes
        if self.coef_.shape[0] != rows or len(self.intercept_) != rows:
            raise ClassifierError(
                f"coef {self.coef_.shape} and intercept {self.intercept_.shape} for {len(classes)} classes"
            )

    @classmethod
    def from_sklearn(cls, clf: Any) -> LinearClassifier:
        """The same classifier from a fitted scikit-learn linear one (``coef_``, ``intercept_``, ``classes_``)."""
        for name in ("coef_", "intercept_", "classes_"):
            if not hasattr(clf, name):
                raise ClassifierError(f"not a linear classifier (no {name}): {type(clf).__name__}")
        return cls(clf.coef_, clf.intercept_, [c.item() if hasattr(c, "item") else c for c in clf.classes_])

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict(self, features: np.ndarray) -> np.ndarray:
        scores = self.decision_function(features)
        if scores.shape[-1] == 1:  # binary: one row, the positive class is the last
            return self.classes_[(scores[..., 0] > 0).astype(int)]
        return self.classes_[scores.argmax(-1)]

    def rows(self, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Weights (C, D) and biases (C,) with rows in ``labels`` order (a binary one as two rows)."""
        coef, bias = self.coef_, self.intercept_
        if len(coef) == 1 and len(self.classes_) == 2:
            coef, bias = np.concatenate([-coef, coef]), np.concatenate([-bias, bias])
        names = [str(c) for c in self.classes_]
        try:
            order = [names.index(label) for label in labels]
        except ValueError:
            raise ClassifierError(f"its classes {names} are not the labels {list(labels)}") from None
        return coef[order].astype(np.float32), bias[order].astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write it as JSON (under a temporary name, then renamed)."""
        path = Path(path)
        data = {
            "format": 1,
            "kind": "linear",
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
        return path


def load_classifier(path: str | Path, trust_pickle: bool = False) -> LinearClassifier:
    """A classifier file: the JSON of :meth:`LinearClassifier.save`, or (only with ``trust_pickle``) a joblib pickle."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
            if data.get("kind") != "linear":
                raise ClassifierError(f"{path}: not a linear classifier file")
            return LinearClassifier(np.array(data["coef"]), np.array(data["intercept"]), list(data["classes"]))
        except FileNotFoundError:
            raise ClassifierError(f"{path}: missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
            if isinstance(err, ClassifierError):
                raise
            raise ClassifierError(f"{path}: not a classifier file ({err})") from None
    if not trust_pickle:
        raise ClassifierError(f"{path}: {PICKLE_RISK}")
    import joblib

    try:
        return LinearClassifier.from_sklearn(joblib.load(path))
    except FileNotFoundError:
        raise ClassifierError(f"{path}: missing") from None
    except ClassifierError as err:
        raise ClassifierError(f"{path}: {err}") from None
    except Exception as err:  # a pickle of another scikit-learn version, a truncated file ...
        raise ClassifierError(f"{path}: cannot load the classifier ({type(err).__name__}: {err})") from None
