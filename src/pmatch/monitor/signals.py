"""The drift signals of one delivery against the model's reference, and the Evidently report
that shows them.

Each signal compares one aspect of what production sees with the reference (see
SIGNALS): the score distribution and the share of listings under the match threshold;
photo and title statistics; the model's image and text embeddings (Evidently's embeddings
drift, MMD); and, when the delivery carries reviewed labels, the labelled F1. The values
come from Evidently's own stat tests, so the report (built by write_report with the same
methods and thresholds, each metric with its test) shows the numbers the verdict uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pmatch.config import MonitorParams
from pmatch.monitor.reference import PHOTO_STATISTICS, TITLE_STATISTICS, Listings


@dataclass(frozen=True)
class Signal:
    """One signal: its kind (score, input, embedding, quality), how it is measured, and
    what it means, as the verdict and the report's header say it."""

    kind: str
    description: str


SIGNALS = {
    "score": Signal("score", "score distribution"),
    "below_threshold_share": Signal(
        "score", "share of listings under the match threshold (absolute difference)"
    ),
    "photo_brightness": Signal("input", "photo brightness (mean grey level)"),
    "photo_contrast": Signal("input", "photo contrast (grey level spread)"),
    "photo_sharpness": Signal("input", "photo sharpness (mean absolute Laplacian)"),
    "photo_size": Signal("input", "photo size (geometric mean of width and height)"),
    "title_length": Signal("input", "title length in characters"),
    "title_oov_share": Signal("input", "share of title words the model never trained on"),
    "title_charset": Signal("input", "share of title characters outside ASCII"),
    "image_embeddings": Signal("embedding", "image embeddings (MMD)"),
    "text_embeddings": Signal("embedding", "text embeddings (MMD)"),
    "labels_f1": Signal("quality", "labelled F1 below what the model's test split predicts (drop)"),
}
# The signals measured on one column with monitor.drift_method.
COLUMN_SIGNALS = ("score", *PHOTO_STATISTICS, *TITLE_STATISTICS)
EMBEDDING_SIGNALS = {"image_embeddings": "image_embeddings", "text_embeddings": "text_embeddings"}


def labelled_rows(frame: pd.DataFrame) -> np.ndarray:
    """The positions of rows whose label is 0 or 1 (a blank label: not reviewed).

    Raises ValueError naming the row of any other value."""
    if "label" not in frame.columns:
        return np.array([], dtype=int)
    text = frame["label"].astype(str).str.strip().replace({"nan": "", "1.0": "1", "0.0": "0"})
    wrong = text[~text.isin(["", "0", "1"])]
    if len(wrong):
        raise ValueError(
            f"listing {int(wrong.index[0]) + 1}: label {wrong.iloc[0]!r}; a label is 1 (the "
            "photo matches the title), 0 (it does not) or blank (not reviewed)"
        )
    return np.flatnonzero(text.isin(["0", "1"]).to_numpy())


def expected_f1(reference_metrics: dict, positive_share: float) -> float:
    """The F1 the model's test split predicts for a delivery whose labels are positive_share
    matches: the test recall (true positive rate) and false positive rate, at that mix.

    reference_metrics: the version's metrics.json (recall, true_positives,
    false_positives, false_negatives, pairs)."""
    positives = reference_metrics["true_positives"] + reference_metrics["false_negatives"]
    negatives = reference_metrics["pairs"] - positives
    true_rate = reference_metrics["true_positives"] / positives if positives else 0.0
    false_rate = reference_metrics["false_positives"] / negatives if negatives else 0.0
    true_positive = positive_share * true_rate
    wrong = (1 - positive_share) * false_rate + positive_share * (1 - true_rate)
    return float(2 * true_positive / (2 * true_positive + wrong)) if true_positive else 0.0


def compute_signals(
    reference: Listings,
    current: Listings,
    params: MonitorParams,
    reference_metrics: dict | None = None,
) -> dict[str, dict]:
    """Every signal of current against reference: {name: {kind, drift, method, value,
    threshold, description, reference_mean, current_mean}} (labels_f1 only when current
    has at least params.min_listings labelled rows and reference_metrics is given)."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.metrics.embeddings import MMDDriftMethod

    signals = {}
    for name in COLUMN_SIGNALS:
        before = reference.frame[name].astype(float)
        after = current.frame[name].astype(float)
        threshold = params.thresholds[name]
        test = get_stattest(before, after, "num", params.drift_method)
        result = test(before, after, "num", threshold)
        signals[name] = _signal(
            name,
            bool(result.drifted),
            params.drift_method,
            result.drift_score,
            threshold,
            before.mean(),
            after.mean(),
        )
    before_share = reference.frame["below_threshold"].astype(bool).mean()
    after_share = current.frame["below_threshold"].astype(bool).mean()
    difference = abs(after_share - before_share)
    threshold = params.thresholds["below_threshold_share"]
    signals["below_threshold_share"] = _signal(
        "below_threshold_share",
        difference > threshold,
        "absolute difference",
        difference,
        threshold,
        before_share,
        after_share,
    )
    for name, attribute in EMBEDDING_SIGNALS.items():
        threshold = params.thresholds[name]
        before, after = getattr(reference, attribute), getattr(current, attribute)
        value, drifted, _ = MMDDriftMethod(threshold=threshold)(
            pd.DataFrame(after), pd.DataFrame(before)
        )
        signals[name] = _signal(
            name,
            bool(drifted),
            "mmd",
            value,
            threshold,
            float(np.linalg.norm(before.mean(axis=0))),
            float(np.linalg.norm(after.mean(axis=0))),
        )
    rows = labelled_rows(current.frame)
    if reference_metrics is not None and len(rows) >= params.min_listings:
        from pmatch.evaluate import classification_metrics

        labels = current.frame["label"].astype(str).str.strip().str[0].iloc[rows].astype(int)
        scores = current.frame["score"].astype(float).to_numpy()[rows]
        measured = classification_metrics(
            labels.to_numpy(), scores, float(reference_metrics["threshold"])
        )
        predicted = expected_f1(reference_metrics, float(labels.mean()))
        drop = predicted - measured["f1"]
        signals["labels_f1"] = {
            **_signal(
                "labels_f1",
                drop > params.max_f1_drop,
                "F1 drop",
                drop,
                params.max_f1_drop,
                predicted,
                measured["f1"],
            ),
            "precision": round(measured["precision"], 6),
            "recall": round(measured["recall"], 6),
            "f1": round(measured["f1"], 6),
        }
    return signals


def _signal(name, drift, method, value, threshold, reference_mean, current_mean) -> dict:
    return {
        "kind": SIGNALS[name].kind,
        "drift": bool(drift),
        "method": method,
        "value": round(float(value), 6),
        "threshold": float(threshold),
        "description": SIGNALS[name].description,
        "reference_mean": round(float(reference_mean), 6),
        "current_mean": round(float(current_mean), 6),
    }


def _report_frame(listings: Listings) -> pd.DataFrame:
    frame = listings.frame[["score", *PHOTO_STATISTICS, *TITLE_STATISTICS]].astype(float)
    frame["below_threshold"] = listings.frame["below_threshold"].astype(bool).astype(float)
    # One column per embedding dimension, added at once (column by column fragments the frame).
    embeddings = [
        pd.DataFrame(
            getattr(listings, attribute),
            columns=[
                f"{prefix}_{column}" for column in range(getattr(listings, attribute).shape[1])
            ],
            index=frame.index,
        )
        for attribute, prefix in (("image_embeddings", "image"), ("text_embeddings", "text"))
    ]
    return pd.concat([frame.reset_index(drop=True).set_axis(frame.index), *embeddings], axis=1)


def write_report(
    reference: Listings,
    current: Listings,
    params: MonitorParams,
    signals: dict[str, dict],
    html_path,
    json_path,
    title: str,
):
    """One Evidently report of every signal, each metric with its test (pass/fail) at the
    signal's threshold, saved as self-contained HTML and as JSON. Returns the snapshot (for
    Evidently's UI workspace, pmatch.monitor.workspace).

    signals: compute_signals' result (the below-threshold share's test is the reference
    share plus or minus its threshold). The labelled F1 is in the verdict, not the report."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, MeanValue, ValueDrift
    from evidently.metrics.embeddings import MMDDriftMethod
    from evidently.tests import gte, lte

    before, after = _report_frame(reference), _report_frame(current)
    embeddings = {
        name: [column for column in before.columns if column.startswith(f"{prefix}_")]
        for name, prefix in (("image_embeddings", "image"), ("text_embeddings", "text"))
    }
    definition = DataDefinition(
        numerical_columns=list(before.columns),
        embeddings=embeddings,
    )
    share = signals["below_threshold_share"]
    metrics = [
        ValueDrift(column=name, method=params.drift_method, threshold=params.thresholds[name])
        for name in COLUMN_SIGNALS
    ]
    metrics.append(
        MeanValue(
            column="below_threshold",
            tests=[
                gte(share["reference_mean"] - share["threshold"]),
                lte(share["reference_mean"] + share["threshold"]),
            ],
        )
    )
    metrics += [
        EmbeddingsDrift(
            embeddings_name=name,
            drift_method=MMDDriftMethod(threshold=params.thresholds[name]),
            tests=[lte(params.thresholds[name])],
        )
        for name in EMBEDDING_SIGNALS
    ]
    snapshot = Report(metrics, metadata={"title": title}, include_tests=True).run(
        current_data=Dataset.from_pandas(after, data_definition=definition),
        reference_data=Dataset.from_pandas(before, data_definition=definition),
    )
    snapshot.save_html(str(html_path))
    snapshot.save_json(str(json_path))
    return snapshot
