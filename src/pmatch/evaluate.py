"""Evaluation: threshold choice on validation, test metrics, plots, reference scores."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import (
    CANARY_FILE,
    EVALUATION_FILE,
    METRICS_FILE,
    PLOTS_FILE,
    REFERENCE_FILES,
    REFERENCE_SCORES_FILE,
    TEST_PAIRS_FILE,
)
from pmatch.config import EvaluateParams
from pmatch.error_report import write_error_report
from pmatch.features.dataset import Dataset, load_dataset


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on (labels, scores); ties go to the higher one."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = np.where(
        precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0
    )
    # The last precision/recall point has no threshold; drop it.
    best = int(np.argmax(f1[:-1][::-1]))
    return float(thresholds[::-1][best])


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1, accuracy at threshold, and ROC-AUC (NaN with one class only)."""
    from sklearn.metrics import roc_auc_score

    predicted = scores >= threshold
    positive = labels == 1
    true_positive = int(np.sum(predicted & positive))
    false_positive = int(np.sum(predicted & ~positive))
    false_negative = int(np.sum(~predicted & positive))
    precision = (
        true_positive / (true_positive + false_positive) if true_positive + false_positive else 0.0
    )
    recall = (
        true_positive / (true_positive + false_negative) if true_positive + false_negative else 0.0
    )
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    roc_auc = float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else math.nan
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "accuracy": float(np.mean(predicted == positive)) if len(labels) else math.nan,
        "roc_auc": roc_auc,
        "true_positives": true_positive,
        "false_positives": false_positive,
        "false_negatives": false_negative,
        "pairs": int(len(labels)),
    }


def score_pairs(matcher, dataset: Dataset, pairs: pd.DataFrame) -> np.ndarray:
    """Scores dataset pairs from embeddings: each photo and text is encoded once (from the
    cached frozen features when the dataset has them)."""
    image_rows = dataset.items["image_index"].to_numpy()[pairs["image_row"].to_numpy()]
    used_images, image_positions = np.unique(image_rows, return_inverse=True)
    used_texts, text_positions = np.unique(pairs["text_row"].to_numpy(), return_inverse=True)
    if dataset.images is not None:
        image_embeddings = matcher.embed_images(dataset.images[used_images])
    else:
        image_embeddings = matcher.embed_image_features(dataset.image_features[used_images])
    if dataset.tokens is not None:
        text_embeddings = matcher.embed_token_ids(dataset.tokens[used_texts])
    else:
        text_embeddings = matcher.embed_text_features(
            dataset.text_features[used_texts],
            None if dataset.colour_mentions is None else dataset.colour_mentions[used_texts],
        )
    return matcher.score_embeddings(
        image_embeddings[image_positions], text_embeddings[text_positions]
    )


def retrieval_recall(score, dataset: Dataset, rows: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Recall@k both ways over catalogue rows: does row i's photo rank its own text in the
    top k of all the rows' texts (image->text), and the text its own photo (text->image)?"""
    pairs = pd.DataFrame(
        {
            "image_row": np.repeat(rows, len(rows)),
            "text_row": np.tile(rows, len(rows)),
        }
    )
    scores = score(pairs).reshape(len(rows), len(rows))
    own = np.diag(scores)[:, None]
    # Rank = how many other candidates score at least as high as the true one (ties count
    # against it, so a constant scorer ranks last, not first).
    image_to_text = (scores >= own).sum(axis=1) - 1
    text_to_image = (scores.T >= own).sum(axis=1) - 1
    result = {}
    for k in ks:
        result[f"recall_at_{k}_image_to_text"] = float(np.mean(image_to_text < k))
        result[f"recall_at_{k}_text_to_image"] = float(np.mean(text_to_image < k))
    return result


def measure(score, dataset: Dataset) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """Every metric of a model on a dataset, at the threshold that maximises F1 on val.

    score: a function from a pairs frame (image_row, text_row) to match scores, so
    baselines that are not Keras models are measured the same way.
    Returns (metrics, test pairs, test scores).
    """
    from sklearn.metrics import average_precision_score

    val_pairs, test_pairs = dataset.split_pairs("val"), dataset.split_pairs("test")
    if test_pairs.empty or val_pairs.empty:
        raise ValueError("the val or test split has no pairs; the catalogue is too small")
    val_scores, test_scores = score(val_pairs), score(test_pairs)
    val_labels, test_labels = val_pairs["label"].to_numpy(), test_pairs["label"].to_numpy()

    threshold = best_f1_threshold(val_labels, val_scores)
    metrics = classification_metrics(test_labels, test_scores, threshold)
    metrics["threshold"] = threshold
    metrics["pr_auc"] = float(average_precision_score(test_labels, test_scores))
    metrics["val_f1"] = classification_metrics(val_labels, val_scores, threshold)["f1"]
    for kind in ("random", "hard"):
        chosen = (test_pairs["kind"].isin(["match", kind])).to_numpy()
        metrics[f"f1_{kind}_negatives"] = classification_metrics(
            test_labels[chosen], test_scores[chosen], threshold
        )["f1"]
    categories = dataset.items["top_category"].to_numpy()[test_pairs["image_row"].to_numpy()]
    metrics["f1_by_category"] = {
        str(category): _round(
            classification_metrics(
                test_labels[categories == category], test_scores[categories == category], threshold
            )["f1"]
        )
        for category in sorted(set(categories))
    }
    test_rows = dataset.items.index[dataset.items["split"] == "test"].to_numpy()
    metrics.update(retrieval_recall(score, dataset, test_rows))
    metrics = {key: _round(value) for key, value in metrics.items()}
    return metrics, test_pairs, test_scores


def evaluate_model(
    model_dir: str | Path,
    dataset_dir: str | Path,
    params: EvaluateParams,
    out_dir: str | Path,
    catalog: str | Path | None = None,
    canary_pairs: int = 8,
) -> dict:
    """Chooses the threshold on val, measures test, writes metrics, plot data and plots.

    out_dir gets metrics.json (DVC metrics), pr_curve.csv and score_histogram.csv (DVC plots),
    evaluation.png (PR curve, score histograms by pair kind, confusion matrix),
    reference_scores.csv (the test scores monitoring compares batches with), the test
    pairs the model decides wrongly: errors.csv and errors.html (pmatch.error_report; with
    catalog, the catalogue folder the dataset was built from, it shows their photos), and
    test_pairs.csv, every test pair with the candidate's score (the gate scores production
    on the same pairs).

    With catalog, also canary.csv (canary_pairs test pairs, half matches, with the score
    the candidate gives them from the raw photo and text: the smoke test after deployment
    must reproduce it), evaluation.json (the catalogue's data version), and monitoring's
    reference: reference_listings.csv and reference_embeddings.npz (the test split's
    listings, each photo with its own title, scored from the raw photos, with photo and
    title statistics and embeddings; pmatch.monitor.reference).
    """
    from pmatch.model.inference import Matcher

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        matcher, dataset = Matcher.load(model_dir), load_dataset(dataset_dir)
        metrics, test_pairs, test_scores = measure(
            lambda pairs: score_pairs(matcher, dataset, pairs), dataset
        )
    except ValueError as error:
        raise ValueError(f"{dataset_dir}: {error}") from None
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    reference = test_pairs[["label", "kind"]].assign(score=np.round(test_scores, 6))
    reference.to_csv(out_dir / REFERENCE_SCORES_FILE, index=False)
    scored = scored_test_pairs(dataset, test_pairs, test_scores)
    scored.to_csv(out_dir / TEST_PAIRS_FILE, index=False)
    _write_plots(test_pairs, test_scores, metrics, params, out_dir)
    write_error_report(test_pairs, test_scores, metrics, dataset.items, out_dir, catalog)
    # Without the catalogue neither the raw photos nor the data version are known: no
    # canary or evaluation record, and none left from an earlier run (the gate refuses).
    for name in (CANARY_FILE, EVALUATION_FILE, *REFERENCE_FILES):
        (out_dir / name).unlink(missing_ok=True)
    if catalog is not None:
        from pmatch.catalog.version import catalog_version
        from pmatch.features.store import open_default_store
        from pmatch.monitor.reference import describe_listings, write_reference

        data_version = catalog_version(catalog)
        # Monitoring's reference: the test split's listings as production sees them.
        from pmatch.catalog.format import read_catalog

        test_keys = set(dataset.items.loc[dataset.items["split"] == "test", "row_key"])
        listings = read_catalog(catalog)
        test_items = listings[listings["row_key"].isin(test_keys)]
        write_reference(
            describe_listings(
                replace(
                    matcher, threshold=metrics["threshold"], feature_store=open_default_store()
                ),
                catalog,
                test_items,
            ),
            data_version,
            out_dir,
        )
        canary = canary_scores(
            replace(matcher, threshold=metrics["threshold"]),
            choose_canary(scored, canary_pairs),
            catalog,
        )
        canary.to_csv(out_dir / CANARY_FILE, index=False)
        record = {
            "data_version": data_version,
            "catalog": str(catalog),
            "test_pairs": int(len(scored)),
            "test_products": int(scored["product_id"].nunique()),
            "canary_pairs": int(len(canary)),
        }
        (out_dir / EVALUATION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    return metrics


def scored_test_pairs(
    dataset: Dataset, test_pairs: pd.DataFrame, test_scores: np.ndarray
) -> pd.DataFrame:
    """The test pairs as a pairs file: image_path (as catalog.csv names it, relative to the
    catalogue folder), text, label, kind, product_id (the photo's product, the unit the
    gate's bootstrap resamples) and the candidate's score, at full precision."""
    items = dataset.items
    image_rows, text_rows = test_pairs["image_row"].to_numpy(), test_pairs["text_row"].to_numpy()
    return pd.DataFrame(
        {
            "image_path": items["image_path"].to_numpy()[image_rows],
            "text": items["text"].to_numpy()[text_rows],
            "label": test_pairs["label"].to_numpy(),
            "kind": test_pairs["kind"].to_numpy(),
            "product_id": items["product_id"].astype(str).to_numpy()[image_rows],
            "score": np.asarray(test_scores, dtype="float64"),
        }
    )


def choose_canary(scored: pd.DataFrame, count: int) -> pd.DataFrame:
    """count test pairs, half matches and half non-matches (as far as there are), spread
    evenly over the pairs sorted by product, photo and text: the same pairs every run."""
    ordered = scored.sort_values(["product_id", "image_path", "text", "kind"], kind="stable")
    chosen = []
    matches, others = ordered[ordered["label"] == 1], ordered[ordered["label"] != 1]
    for frame, wanted in ((matches, (count + 1) // 2), (others, count // 2)):
        wanted = min(wanted, len(frame))
        if wanted:
            positions = np.unique(np.linspace(0, len(frame) - 1, wanted).round().astype(int))
            chosen.append(frame.iloc[positions])
    return pd.concat(chosen).reset_index(drop=True)


def canary_scores(matcher, canary: pd.DataFrame, catalog: str | Path) -> pd.DataFrame:
    """canary with expected_score: what matcher gives each pair from its raw photo (resolved
    against the catalogue folder) and text, scored exactly as `pmatch score` scores a
    pairs file of these rows (pmatch.score.score_pairs_file), so that a fresh process
    loading the same model reproduces it."""
    from pmatch.score import score_catalog_pairs

    canary = canary[["image_path", "text", "label", "kind", "product_id"]].copy()
    canary["expected_score"] = score_catalog_pairs(matcher, catalog, canary)
    return canary


def _round(value):
    if isinstance(value, float):
        return value if math.isnan(value) else round(value, 5)
    return value


def _write_plots(
    test_pairs: pd.DataFrame,
    scores: np.ndarray,
    metrics: dict,
    params: EvaluateParams,
    out_dir: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    labels, kinds, threshold = (
        test_pairs["label"].to_numpy(),
        test_pairs["kind"].to_numpy(),
        metrics["threshold"],
    )
    precision, recall, _ = precision_recall_curve(labels, scores)
    pr_curve = pd.DataFrame({"recall": np.round(recall, 5), "precision": np.round(precision, 5)})
    pr_curve.to_csv(out_dir / "pr_curve.csv", index=False)
    edges = np.linspace(0, 1, params.histogram_bins + 1)
    histogram = pd.DataFrame(
        {
            "score": np.round((edges[:-1] + edges[1:]) / 2, 4),
            "matches": np.histogram(scores[labels == 1], edges)[0],
            "non_matches": np.histogram(scores[labels == 0], edges)[0],
        }
    )
    histogram.to_csv(out_dir / "score_histogram.csv", index=False)

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(recall, precision)
    axes[0].set_xlabel("recall")
    axes[0].set_ylabel("precision")
    axes[0].set_title(f"Precision-recall, test split (PR-AUC {metrics['pr_auc']:.3f})")
    by_kind = [scores[kinds == kind] for kind in ("match", "random", "hard")]
    axes[1].hist(by_kind, bins=edges, label=["match", "random negative", "hard negative"])
    axes[1].axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    axes[1].set_xlabel("match score")
    axes[1].set_title("Score histogram by pair kind, test split")
    axes[1].legend()
    predicted = scores >= threshold
    confusion = np.array(
        [
            [np.sum(~predicted & (labels == 0)), np.sum(predicted & (labels == 0))],
            [np.sum(~predicted & (labels == 1)), np.sum(predicted & (labels == 1))],
        ]
    )
    axes[2].imshow(confusion, cmap="Blues")
    for (row, column), count in np.ndenumerate(confusion):
        axes[2].text(column, row, str(count), ha="center", va="center", fontsize=14)
    axes[2].set_xticks([0, 1], ["non-match", "match"])
    axes[2].set_yticks([0, 1], ["non-match", "match"])
    axes[2].set_xlabel("predicted")
    axes[2].set_ylabel("actual")
    axes[2].set_title(f"Confusion matrix (F1 {metrics['f1']:.3f})")
    figure.tight_layout()
    figure.savefig(out_dir / PLOTS_FILE, dpi=100)
    plt.close(figure)
