"""The deployment gate: the candidate against production on the same test pairs.

The rule (gate section of params.yaml):

- Both models score the candidate's test pairs (reports/evaluate/test_pairs.csv): the
  candidate's scores were recorded by evaluation at its threshold; production scores the
  same raw photos and texts at its own threshold (its metrics.json).
- DEPLOY only if the candidate's F1 >= gate.min_f1, and, when there is a production model,
  the paired difference d = F1(candidate) - F1(production) >= -gate.max_regression, and the
  bootstrap interval of d (test PRODUCTS resampled with replacement, both F1s recomputed on
  the resampled pairs, gate.bootstrap_resamples times, seed gate.seed, central
  gate.confidence) does not lie wholly below -gate.max_regression (high < -max_regression
  means the candidate is worse beyond what we accept, with that confidence).
- Fail closed: candidate metrics missing or not a number -> NO DEPLOY. A production pointer
  that exists but whose model cannot be downloaded, loaded or scored -> NO DEPLOY, unless
  gate.allow_unreadable_production is true, which judges on min_f1 alone and is recorded in
  the decision. No production pointer at all (first deploy) -> judged on min_f1, said so.

The decision (GateDecision, reports/gate/decision.json) is bound to what it was about: the
candidate model's and metrics' sha256, the data version, the params' sha256 and the
production version compared with. `pmatch deploy` checks each against what it is about to
ship (check_decision) and refuses on a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from pmatch.config import GateParams


class GateRefused(RuntimeError):
    """The gate's decision does not allow this deployment; the message says why and what to do."""


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and exactly what about (see the module docstring)."""

    deploy: bool
    reasons: list[str] = field(default_factory=list)
    candidate_f1: float | None = None
    production_f1: float | None = None
    production_version: str | None = None
    difference: float | None = None
    interval: list[float] | None = None
    confidence: float | None = None
    test_pairs: int = 0
    products: int = 0
    candidate_model_sha256: str | None = None
    metrics_sha256: str | None = None
    data_version: str | None = None
    params_sha256: str | None = None
    decided_at: str | None = None
    run_id: str | None = None
    allow_unreadable_production_used: bool = False

    def save(self, path: str | Path) -> None:
        """Writes the decision atomically (a temporary file renamed over path), so a gate
        killed while writing leaves no half-written decision."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w") as stream:
                json.dump(asdict(self), stream, indent=2)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> GateDecision:
        """The decision at path; GateRefused when it is missing or not a decision."""
        path = Path(path)
        if not path.is_file():
            raise GateRefused(f"{path}: no gate decision; run `pmatch gate` first")
        try:
            document = json.loads(path.read_text())
            known = {item.name for item in fields(cls)}
            return cls(**{key: value for key, value in document.items() if key in known})
        except (json.JSONDecodeError, TypeError, AttributeError) as error:
            raise GateRefused(
                f"{path}: not a gate decision ({error}); run `pmatch gate` again"
            ) from None


# The fields that tie a decision to one candidate, as check_decision compares them.
BOUND_FIELDS = (
    "candidate_model_sha256",
    "metrics_sha256",
    "data_version",
    "params_sha256",
)


def candidate_f1_from_metrics(metrics: dict | None) -> float | None:
    """The F1 in a metrics dict, or None when it is absent, not a number, NaN or not in [0, 1]."""
    if not isinstance(metrics, dict):
        return None
    value = metrics.get("f1")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or not 0 <= value <= 1:
        return None
    return float(value)


def threshold_from_metrics(metrics: dict | None) -> float | None:
    """The decision threshold in a metrics dict, or None when it is not a number in [0, 1]."""
    if not isinstance(metrics, dict):
        return None
    value = metrics.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or not 0 <= value <= 1:
        return None
    return float(value)


def read_metrics(path: str | Path) -> dict | None:
    """metrics.json as a dict, or None when the file is missing or unreadable."""
    try:
        document = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _confusion(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray, count: int):
    """True positives, false positives and false negatives per group (product)."""
    positive = labels == 1
    return (
        np.bincount(groups, weights=predicted & positive, minlength=count),
        np.bincount(groups, weights=predicted & ~positive, minlength=count),
        np.bincount(groups, weights=~predicted & positive, minlength=count),
    )


def _f1(true_positive, false_positive, false_negative):
    """F1 from counts (arrays allowed); 0 where there is nothing to find and nothing found."""
    denominator = 2 * true_positive + false_positive + false_negative
    return np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1e-12), 0.0)


def f1_at(labels, scores, threshold: float) -> float:
    """F1 of scores >= threshold against labels (1 = match)."""
    labels, predicted = np.asarray(labels), np.asarray(scores) >= threshold
    groups = np.zeros(len(labels), dtype=int)
    return float(_f1(*_confusion(labels, predicted, groups, 1))[0])


def paired_bootstrap(
    labels,
    candidate_predicted,
    production_predicted,
    products,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float, float]:
    """(difference, low, high): F1(candidate) - F1(production) on the pairs, and its central
    `confidence` percentile interval over `resamples` bootstrap samples of the products.

    Each sample draws as many products as there are, with replacement, and takes all the
    pairs of each drawn product (as often as it was drawn); both F1s are recomputed on those
    pairs, so the interval reflects that pairs of one product are not independent.
    """
    labels = np.asarray(labels)
    _, groups = np.unique(np.asarray(products, dtype=str), return_inverse=True)
    count = int(groups.max()) + 1 if len(groups) else 0
    candidate = np.stack(_confusion(labels, np.asarray(candidate_predicted, bool), groups, count))
    production = np.stack(_confusion(labels, np.asarray(production_predicted, bool), groups, count))
    difference = float(_f1(*candidate.sum(axis=1)) - _f1(*production.sum(axis=1)))
    if count == 0:
        return difference, difference, difference
    rng = np.random.default_rng(seed)
    # weights[r, p]: how many times sample r drew product p.
    draws = rng.integers(0, count, size=(resamples, count))
    weights = np.zeros((resamples, count))
    np.add.at(weights, (np.repeat(np.arange(resamples), count), draws.ravel()), 1)
    candidate_f1 = _f1(*(weights @ candidate.T).T)
    production_f1 = _f1(*(weights @ production.T).T)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(candidate_f1 - production_f1, [tail, 100 - tail])
    return difference, float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """Both models on the candidate's test pairs (what decide needs of them)."""

    labels: np.ndarray
    products: np.ndarray
    candidate_scores: np.ndarray
    candidate_threshold: float
    production_scores: np.ndarray | None = None
    production_threshold: float | None = None


def decide(
    candidate_metrics: dict | None,
    comparison: Comparison | None,
    production_version: str | None,
    params: GateParams,
    production_error: str | None = None,
) -> GateDecision:
    """The decision rule of the module docstring, on numbers already gathered.

    candidate_metrics: the candidate's metrics.json (None when unreadable). comparison: the
    test pairs with both models' scores (production's None when there is none or it could
    not be scored), or None when the test pairs could not be read. production_version: the
    production pointer's version (None: nothing was ever promoted). production_error: why
    production could not be read, loaded or scored (None when it could).
    """
    if candidate_f1_from_metrics(candidate_metrics) is None:
        return GateDecision(
            False,
            ["candidate metrics are missing or F1 is not a number in [0, 1]: not deploying"],
            production_version=production_version,
        )
    if comparison is None:
        return GateDecision(
            False,
            ["the candidate's test pairs could not be read: not deploying"],
            production_version=production_version,
        )
    labels = comparison.labels
    candidate_predicted = comparison.candidate_scores >= comparison.candidate_threshold
    candidate_f1 = f1_at(labels, comparison.candidate_scores, comparison.candidate_threshold)
    counts = {
        "test_pairs": int(len(labels)),
        "products": int(len(np.unique(comparison.products.astype(str)))),
    }
    reasons = []
    deploy = candidate_f1 >= params.min_f1
    relation = ">=" if deploy else "<"
    reasons.append(
        f"candidate F1 {candidate_f1:.4f} {relation} gate.min_f1 {params.min_f1:.4f} "
        f"on {counts['test_pairs']} test pairs of {counts['products']} products"
    )
    if production_version is None:
        reasons.append("no production model yet: first deploy, judged on gate.min_f1 alone")
        return GateDecision(deploy, reasons, candidate_f1, **counts)
    if production_error is not None or comparison.production_scores is None:
        problem = production_error or "it was not scored"
        if not params.allow_unreadable_production:
            reasons.append(
                f"production {production_version} cannot be compared ({problem}): NO DEPLOY. "
                "Repair production, or set gate.allow_unreadable_production: true to replace "
                "it judged on gate.min_f1 alone"
            )
            return GateDecision(False, reasons, candidate_f1, None, production_version, **counts)
        reasons.append(
            f"production {production_version} cannot be compared ({problem}); "
            "gate.allow_unreadable_production is true: judged on gate.min_f1 alone"
        )
        return GateDecision(
            deploy,
            reasons,
            candidate_f1,
            None,
            production_version,
            allow_unreadable_production_used=True,
            **counts,
        )
    production_f1 = f1_at(labels, comparison.production_scores, comparison.production_threshold)
    difference, low, high = paired_bootstrap(
        labels,
        candidate_predicted,
        comparison.production_scores >= comparison.production_threshold,
        comparison.products,
        params.bootstrap_resamples,
        params.confidence,
        params.seed,
    )
    floor = -params.max_regression
    summary = (
        f"candidate F1 {candidate_f1:.4f} vs production {production_version} F1 "
        f"{production_f1:.4f} on the same test pairs: difference {difference:+.4f}, "
        f"{params.confidence:.0%} interval [{low:+.4f}, {high:+.4f}] over test products"
    )
    reasons.append(summary)
    if difference < floor:
        deploy = False
        reasons.append(
            f"the difference {difference:+.4f} is below -gate.max_regression {floor:+.4f}: "
            "the candidate is worse than production"
        )
    elif high < floor:
        deploy = False
        reasons.append(
            f"the interval's high end {high:+.4f} is below -gate.max_regression {floor:+.4f}: "
            "the candidate is worse than production beyond what is accepted"
        )
    else:
        reasons.append(
            f"the difference {difference:+.4f} >= -gate.max_regression {floor:+.4f} and the "
            "interval does not show the candidate worse beyond it"
        )
    return GateDecision(
        deploy,
        reasons,
        candidate_f1,
        production_f1,
        production_version,
        round(difference, 6),
        [round(low, 6), round(high, 6)],
        params.confidence,
        **counts,
    )


def check_decision(decision: GateDecision, current: dict, production_version: str | None) -> None:
    """Refuses (GateRefused) unless decision says deploy and is about what is shipped now.

    current: the BOUND_FIELDS recomputed from the files about to be shipped (see
    pmatch.pipeline.bound_fields). production_version: the pointer's version now.
    """
    if not decision.deploy:
        raise GateRefused(
            f"the gate refused this model ({'; '.join(decision.reasons)}); not deploying"
        )
    for name in BOUND_FIELDS:
        recorded, now = getattr(decision, name), current.get(name)
        if recorded is None or recorded != now:
            raise GateRefused(
                f"the gate decision is about another candidate: its {name} is {recorded}, "
                f"what would be shipped has {now}; run `pmatch gate` again"
            )
    if production_version != decision.production_version:
        raise GateRefused(
            f"production moved from {decision.production_version} to {production_version} "
            "since the gate; run the gate again"
        )


def sha256_bytes(path: str | Path) -> str:
    """The sha256 of a file's bytes (params.yaml)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_files(model_dir: str | Path) -> dict[str, Path]:
    """The files of a model folder that scoring needs and deployment uploads (name -> path);
    their digest is the candidate's identity (candidate_model_sha256)."""
    from pmatch.artifacts import (
        MINILM_VOCABULARY_FILE,
        MODEL_FILE,
        PREPROCESSING_FILE,
        VOCABULARY_FILE,
    )

    model_dir = Path(model_dir)
    files = {name: model_dir / name for name in (MODEL_FILE, VOCABULARY_FILE, PREPROCESSING_FILE)}
    if (model_dir / MINILM_VOCABULARY_FILE).is_file():
        files[MINILM_VOCABULARY_FILE] = model_dir / MINILM_VOCABULARY_FILE
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise GateRefused(f"{', '.join(missing)}: missing; run `dvc repro train`")
    return files


def bound_fields(
    model_dir: str | Path, metrics_path: str | Path, params_path: str | Path, data_version
) -> dict:
    """The BOUND_FIELDS of the candidate in model_dir, evaluated in metrics_path, with the
    params at params_path, on data_version (None when unknown)."""
    from pmatch.registry import file_sha256, folder_sha256

    metrics_path = Path(metrics_path)
    return {
        "candidate_model_sha256": folder_sha256(model_files(model_dir)),
        "metrics_sha256": file_sha256(metrics_path) if metrics_path.is_file() else None,
        "data_version": data_version,
        "params_sha256": sha256_bytes(params_path),
    }


class ProductionUnreadable(RuntimeError):
    """The production model cannot be downloaded, loaded or scored."""


def read_test_pairs(path: str | Path):
    """reports/evaluate/test_pairs.csv as a frame (image_path, text, label, kind,
    product_id, score), or None when it is missing or lacks a column."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        return None
    frame = pd.read_csv(
        path, dtype={"image_path": str, "text": str, "product_id": str}, keep_default_na=False
    )
    needed = {"image_path", "text", "label", "product_id", "score"}
    return frame if needed <= set(frame.columns) and len(frame) else None


def score_with_production(
    registry, version: str, pairs, catalog_dir: str | Path, cache_dir: str | Path
) -> tuple[np.ndarray, float]:
    """Production's scores of the pairs (from their raw photos, resolved against the
    catalogue folder, and texts) and its own threshold (its metrics.json).

    Raises ProductionUnreadable naming what failed (download, metrics, load, scoring).
    """
    from pmatch.features.store import open_default_store
    from pmatch.model.inference import Matcher
    from pmatch.score import score_catalog_pairs

    step = f"downloading production {version}"
    try:
        folder = registry.download(version, cache_dir)
        step = f"reading production {version}'s metrics.json"
        threshold = threshold_from_metrics(read_metrics(Path(folder) / "metrics.json"))
        if threshold is None:
            raise ProductionUnreadable(
                f"{registry.uri('models', version, 'metrics.json')} has no threshold that is "
                "a number in [0, 1]"
            )
        step = f"loading production {version}"
        matcher = Matcher.load(folder, threshold=threshold, feature_store=open_default_store())
        step = f"scoring the test pairs with production {version}"
        scores = score_catalog_pairs(matcher, catalog_dir, pairs)
    except ProductionUnreadable:
        raise
    except Exception as error:  # noqa: BLE001 - any failure means production can't be compared
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ProductionUnreadable(f"{step} failed: {message}") from error
    return np.asarray(scores, dtype="float64"), threshold


def run_gate(
    *,
    model_dir: str | Path,
    evaluate_dir: str | Path,
    params_path: str | Path,
    catalog_dir: str | Path,
    registry,
    params: GateParams,
    out_path: str | Path,
    cache_dir: str | Path,
    run_id: str,
    decided_at: str,
) -> GateDecision:
    """Decides on the candidate (model_dir, evaluated in evaluate_dir) against the
    registry's production model on the same test pairs, and writes the decision to out_path.

    The old decision is deleted first and the new one written atomically at the end, so a
    gate that raises (S3 down, say) leaves no decision for `pmatch deploy` to act on.
    """
    from pmatch.artifacts import EVALUATION_FILE, METRICS_FILE, TEST_PAIRS_FILE
    from pmatch.catalog.version import catalog_version

    out_path, evaluate_dir = Path(out_path), Path(evaluate_dir)
    out_path.unlink(missing_ok=True)
    metrics = read_metrics(evaluate_dir / METRICS_FILE)
    evaluation = read_metrics(evaluate_dir / EVALUATION_FILE) or {}
    data_version = evaluation.get("data_version")
    binding = bound_fields(model_dir, evaluate_dir / METRICS_FILE, params_path, data_version)
    pointer = registry.production()
    production_version = pointer["version"] if pointer else None

    problem = None
    if not isinstance(data_version, str):
        problem = (
            f"{evaluate_dir / EVALUATION_FILE} is missing or names no data_version: "
            "run `dvc repro evaluate` (with --catalog)"
        )
    elif catalog_version(catalog_dir) != data_version:
        problem = (
            f"the catalogue {catalog_dir} changed since the evaluation (data version "
            f"{data_version[:12]}): run `dvc repro evaluate`"
        )
    pairs = read_test_pairs(evaluate_dir / TEST_PAIRS_FILE)
    candidate_threshold = threshold_from_metrics(metrics)
    if problem is None and (pairs is None or candidate_threshold is None):
        problem = (
            f"{evaluate_dir / TEST_PAIRS_FILE} or the threshold in {METRICS_FILE} is missing "
            "or unreadable: run `dvc repro evaluate`"
        )
    if candidate_f1_from_metrics(metrics) is None:
        decision = decide(metrics, None, production_version, params)
    elif problem is not None:
        decision = GateDecision(False, [f"{problem}: not deploying"])
    else:
        production_scores, production_threshold, production_error = None, None, None
        if production_version is not None:
            try:
                production_scores, production_threshold = score_with_production(
                    registry, production_version, pairs, catalog_dir, cache_dir
                )
            except ProductionUnreadable as error:
                production_error = str(error)
        comparison = Comparison(
            labels=pairs["label"].to_numpy(),
            products=pairs["product_id"].to_numpy(),
            candidate_scores=pairs["score"].to_numpy(dtype="float64"),
            candidate_threshold=candidate_threshold,
            production_scores=production_scores,
            production_threshold=production_threshold,
        )
        decision = decide(metrics, comparison, production_version, params, production_error)
    decision = GateDecision(
        **{
            **asdict(decision),
            **binding,
            "production_version": production_version,
            "decided_at": decided_at,
            "run_id": run_id,
        }
    )
    decision.save(out_path)
    return decision
