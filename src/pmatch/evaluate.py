"""Evaluation: threshold choice on validation, test metrics, plots, reference scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import (
    ERRORS_FILE,
    ERRORS_REPORT_FILE,
    METRICS_FILE,
    PLOTS_FILE,
    REFERENCE_SCORES_FILE,
)
from pmatch.config import EvaluateParams
from pmatch.features.dataset import Dataset, load_dataset

# errors.html shows this many pairs of each kind of error, the most confident first;
# errors.csv lists every one.
ERRORS_SHOWN = 50
THUMBNAIL_SIDE = 112
TEXT_SHOWN = 220  # characters of each text in errors.html


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


def score_pairs_with_variants(
    matcher, dataset: Dataset, pairs: pd.DataFrame, text_weight: float, photo_weight: float
) -> np.ndarray:
    """score_pairs, each pair weighed against the other colour variants of its products
    (pmatch.model.variants): the catalogue rows sharing the photo's or the text's product_id."""
    from pmatch.model.variants import contrast_with_variants

    products = dataset.items["product_id"].to_numpy()

    def score(image_rows, text_rows):
        return score_pairs(
            matcher, dataset, pd.DataFrame({"image_row": image_rows, "text_row": text_rows})
        )

    return contrast_with_variants(
        score,
        pairs["image_row"].to_numpy(),
        pairs["text_row"].to_numpy(),
        products,
        products,
        text_weight,
        photo_weight,
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
) -> dict:
    """Chooses the threshold on val, measures test, writes metrics, plot data and plots.

    out_dir gets metrics.json (DVC metrics), pr_curve.csv and score_histogram.csv (DVC plots),
    evaluation.png (PR curve, score histograms by pair kind, confusion matrix),
    reference_scores.csv (the test scores monitoring compares batches with), and the test
    pairs the model decides wrongly: errors.csv and errors.html (write_error_report; with
    catalog, the catalogue folder the dataset was built from, it shows their photos).
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
    _write_plots(test_pairs, test_scores, metrics, params, out_dir)
    write_error_report(test_pairs, test_scores, metrics, dataset.items, out_dir, catalog)
    return metrics


def misjudged_pairs(
    test_pairs: pd.DataFrame, scores: np.ndarray, threshold: float, items: pd.DataFrame
) -> pd.DataFrame:
    """The pairs decided wrongly at threshold: matches scored below it and non-matches at
    or above it, each kind of error apart and the most confident first.

    items: the dataset's catalogue rows (Dataset.items), which name the photo's own row
    (photo_of), the text's row (text_of) and the text itself.
    """
    labels = test_pairs["label"].to_numpy()
    wrong = (scores >= threshold) != (labels == 1)
    pairs = test_pairs.loc[wrong]
    photo, text = items.loc[pairs["image_row"]], items.loc[pairs["text_row"]]
    errors = pd.DataFrame(
        {
            "error": np.where(
                pairs["label"].to_numpy() == 1,
                "missed match",
                "accepted " + pairs["kind"].astype(str) + " negative",
            ),
            "kind": pairs["kind"].to_numpy(),
            "label": pairs["label"].to_numpy(),
            "score": np.round(scores[wrong], 4),
            "margin": np.round(np.abs(scores[wrong] - threshold), 4),
            "photo_of": photo["row_key"].to_numpy(),
            "text_of": text["row_key"].to_numpy(),
            "category": photo["top_category"].to_numpy(),
            "image_path": photo["image_path"].to_numpy(),
            "text": text["text"].to_numpy(),
            "image_row": pairs["image_row"].to_numpy(),
            "text_row": pairs["text_row"].to_numpy(),
        }
    )
    return errors.sort_values(
        ["label", "kind", "margin"], ascending=[False, True, False], ignore_index=True
    )


def write_error_report(
    test_pairs: pd.DataFrame,
    scores: np.ndarray,
    metrics: dict,
    items: pd.DataFrame,
    out_dir: Path,
    catalog: str | Path | None = None,
) -> pd.DataFrame:
    """Writes errors.csv (every misjudged test pair: misjudged_pairs) and errors.html (up
    to ERRORS_SHOWN of each kind of error, with the photo, the text it was scored against
    and what the photo really is), for people reviewing what a model gets wrong.

    catalog: the catalogue folder the photos' paths are relative to; without it (or for a
    photo not there) the report names the photo's path instead of showing it.
    Returns the errors.
    """
    import html

    errors = misjudged_pairs(test_pairs, scores, metrics["threshold"], items)
    errors.to_csv(out_dir / ERRORS_FILE, index=False)
    kinds = test_pairs["kind"].astype(str)
    # Each kind of error: its heading and how many test pairs could have had it.
    totals = {"missed match": ("Missed matches", int((test_pairs["label"] == 1).sum()))}
    for kind in sorted(set(kinds[test_pairs["label"] == 0])):
        totals[f"accepted {kind} negative"] = (
            f"Accepted {kind} negatives",
            int((kinds == kind).sum()),
        )
    counts = errors["error"].value_counts()
    summary = ", ".join(
        f"{error}: {int(counts.get(error, 0))} of {total}" for error, (_, total) in totals.items()
    )
    sections = []
    for error, (heading, total) in totals.items():
        chosen = errors[errors["error"] == error]
        sections.append(f"<h2>{html.escape(heading)}: {len(chosen)} of {total}</h2>")
        if chosen.empty:
            sections.append("<p>None.</p>")
            continue
        sections.append(
            "<table><tr><th>photo</th><th>score</th><th>text scored</th>"
            "<th>photo of / text of</th><th>category</th></tr>"
        )
        sections += [_error_row(row, catalog) for row in chosen.head(ERRORS_SHOWN).itertuples()]
        sections.append("</table>")
        if len(chosen) > ERRORS_SHOWN:
            sections.append(f"<p>And {len(chosen) - ERRORS_SHOWN} more in {ERRORS_FILE}.</p>")
    body = "\n".join(sections)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pmatch: test pairs decided wrongly</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
td.text {{ max-width: 40em; }}
</style></head><body>
<h1>Test pairs decided wrongly</h1>
<p>Threshold {metrics["threshold"]:.4f} (chosen on validation), F1 {metrics["f1"]:.4f} over
{len(test_pairs)} test pairs. {html.escape(summary)}. Most confident first: the score's
distance from the threshold. Every one is in {ERRORS_FILE}.</p>
{body}
</body></html>
"""
    (out_dir / ERRORS_REPORT_FILE).write_text(page, encoding="utf-8")
    return errors


def _error_row(row, catalog: str | Path | None) -> str:
    import html

    text = row.text if len(row.text) <= TEXT_SHOWN else row.text[: TEXT_SHOWN - 1] + "…"
    return (
        f"<tr><td>{_thumbnail(catalog, row.image_path)}</td><td>{row.score:.3f}</td>"
        f'<td class="text">{html.escape(text)}</td>'
        f"<td>{html.escape(str(row.photo_of))}<br>{html.escape(str(row.text_of))}</td>"
        f"<td>{html.escape(str(row.category))}</td></tr>"
    )


def _thumbnail(catalog: str | Path | None, image_path: str) -> str:
    """An inline JPEG thumbnail of the photo, or its path where it cannot be read."""
    import base64
    import html
    import io

    from PIL import Image, ImageOps

    from pmatch.catalog.format import resolve_image

    if catalog is not None:
        try:
            with Image.open(resolve_image(catalog, image_path)) as image:
                image = ImageOps.exif_transpose(image).convert("RGB")
                image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=85)
            encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
            return f'<img src="data:image/jpeg;base64,{encoded}" alt="{html.escape(image_path)}">'
        except OSError:
            pass
    return html.escape(image_path)


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
