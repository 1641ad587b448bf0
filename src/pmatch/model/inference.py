"""Loads a trained model folder and scores pairs from cached image and text embeddings."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pmatch.artifacts import (
    MINILM_VOCABULARY_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    VOCABULARY_FILE,
)
from pmatch.features.images import photos_per_batch
from pmatch.features.text import Vocabulary

# What preprocessing.json must say for scoring to prepare photos and texts as in training.
PREPROCESSING_KEYS = ("image_size", "max_tokens", "image_features", "text_features")


# Models this process keeps loaded, by their file's content: `pmatch run` scores delivery
# after delivery with one production model, and loading it takes 5-8 s on 2 cores.
LOADED_MODELS_KEPT = 2
_LOADED: OrderedDict[str, object] = OrderedDict()


def load_keras_file(path: str | Path):
    """A .keras file pmatch saved (a model, a member's tower or scorer), loaded in safe mode
    with pmatch's custom layers known by name."""
    import keras

    # Importing them registers the custom layers.
    import pmatch.features.colour  # noqa: F401
    import pmatch.features.minilm  # noqa: F401
    import pmatch.model.matcher  # noqa: F401

    return keras.saving.load_model(path, safe_mode=True)


def _load_model(path: Path):
    """The Keras model in path (loaded once per content; scoring never changes it)."""
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    if digest not in _LOADED:
        _LOADED[digest] = load_keras_file(path)
        if len(_LOADED) > LOADED_MODELS_KEPT:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(digest)
    return _LOADED[digest]


class ModelFolderError(ValueError):
    """A model folder lacks a file scoring needs or holds a damaged one; the message names it."""


@dataclass
class Matcher:
    """A loaded model, split into its towers and its scorer.

    threshold: the match decision threshold chosen on validation (None when unknown).
    """

    image_encoder: object
    text_encoder: object
    scorer: object
    vocabulary: Vocabulary
    image_size: int
    max_tokens: int
    threshold: float | None = None
    wordpiece: object = None
    image_features: str = "pixels"
    text_features: str = "tokens"
    feature_store: object = None

    @classmethod
    def load(
        cls, directory: str | Path, threshold: float | None = None, feature_store=None
    ) -> Matcher:
        """The model in directory (model.keras and what scoring needs beside it).

        feature_store: a pmatch.features.store.FeatureStore; with a pretrained model, the
        frozen features of photos and texts it holds are read from it instead of encoded
        again, and new ones are added (pmatch score and monitoring pass the default store).
        """
        directory = Path(directory)
        for name in (MODEL_FILE, VOCABULARY_FILE, PREPROCESSING_FILE):
            if not (directory / name).is_file():
                raise ModelFolderError(
                    f"{directory / name}: missing; a model folder holds {MODEL_FILE}, "
                    f"{VOCABULARY_FILE} and {PREPROCESSING_FILE} (run `dvc repro train`)"
                )
        preprocessing = json.loads((directory / PREPROCESSING_FILE).read_text())
        missing = [key for key in PREPROCESSING_KEYS if key not in preprocessing]
        if missing:
            raise ModelFolderError(
                f"{directory / PREPROCESSING_FILE}: lacks {', '.join(missing)}; the model was "
                "saved by an older pmatch. Train it again (`dvc repro train`)"
            )
        try:
            model = _load_model(directory / MODEL_FILE)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            # Keras says "File not found" of a truncated zip; the file exists, it is damaged.
            detail = " ".join(str(error).split())[:200] or type(error).__name__
            raise ModelFolderError(
                f"{directory / MODEL_FILE} is corrupt ({type(error).__name__}: {detail}): "
                "download or train it again"
            ) from error
        if threshold is None and (directory / "metrics.json").is_file():
            threshold = json.loads((directory / "metrics.json").read_text()).get("threshold")
        wordpiece = None
        if preprocessing["text_features"] == "minilm":
            from pmatch.features.tokenizer import WordPieceTokenizer

            if not (directory / MINILM_VOCABULARY_FILE).is_file():
                raise ModelFolderError(
                    f"{directory / MINILM_VOCABULARY_FILE}: missing; a model trained on MiniLM "
                    "features carries its tokenizer's vocabulary (run `dvc repro train`)"
                )
            wordpiece = WordPieceTokenizer(directory / MINILM_VOCABULARY_FILE)
        return cls(
            wordpiece=wordpiece,
            image_encoder=model.get_layer("image_encoder"),
            text_encoder=model.get_layer("text_encoder"),
            scorer=model.get_layer("scorer"),
            vocabulary=Vocabulary.load(directory / VOCABULARY_FILE),
            image_size=int(preprocessing["image_size"]),
            max_tokens=int(preprocessing["max_tokens"]),
            threshold=threshold,
            image_features=preprocessing["image_features"],
            text_features=preprocessing["text_features"],
            feature_store=feature_store,
        )

    def embed_images(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Embeddings of (n, size, size, 3) uint8 photos, encoded batch_size at a time or
        fewer for large photos (see photos_per_batch), so memory stays bounded.

        With pretrained image features, the frozen features come from the feature store
        where it has them; the trained tower then runs on them (the same computation)."""
        batch_size = min(batch_size, photos_per_batch(self.image_size))
        if self.image_features != "efficientnet_lite0":
            return _predict(self.image_encoder, images, batch_size)
        from pmatch.features.encoders import encode_photos, image_feature_key
        from pmatch.features.store import cached_features, photo_digest

        backbone = self.image_encoder.get_layer("image_feature_encoder")
        features, _ = cached_features(
            self.feature_store,
            image_feature_key(self.image_size),
            [photo_digest(photo) for photo in images],
            backbone.output_shape[-1],
            lambda positions: _predict(backbone, images[positions], batch_size, call=encode_photos),
        )
        return self.embed_image_features(features)

    def embed_token_ids(self, tokens: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        return _predict(self.text_encoder, tokens, batch_size)

    def embed_texts(self, texts, batch_size: int = 1024) -> np.ndarray:
        if self.wordpiece is None:
            return self.embed_token_ids(self.vocabulary.encode(texts, self.max_tokens), batch_size)
        from pmatch.features.encoders import encode_texts, text_feature_key
        from pmatch.features.store import cached_features, text_digest

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.text_encoder.output_shape[-1]), dtype="float32")
        ids, mask = self.wordpiece.encode(texts, self.max_tokens)
        backbone = self.text_encoder.get_layer("minilm")
        features, _ = cached_features(
            self.feature_store,
            text_feature_key(self.max_tokens),
            [text_digest(text) for text in texts],
            backbone.output_shape[-1],
            lambda positions: _predict(
                backbone,
                {"input_ids": ids[positions], "attention_mask": mask[positions]},
                # TensorFlow Lite runs 64 texts at a time, however many it is given; the
                # more it is given, the better they sort by length (less padding).
                batch_size,
                call=lambda model, batch: encode_texts(
                    model, batch["input_ids"], batch["attention_mask"]
                ),
            ),
        )
        mentions = None
        if isinstance(self.text_encoder.get_layer("text_tower").input, dict):
            mentions = _predict(self.text_encoder.get_layer("colour_mentions"), ids, 4096)
        return self.embed_text_features(features, mentions)

    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """Embeddings from frozen EfficientNet features (the image tower alone)."""
        return _predict(self.image_encoder.get_layer("image_tower"), features, 4096)

    def embed_text_features(
        self, features: np.ndarray, colour_mentions: np.ndarray | None = None
    ) -> np.ndarray:
        """Embeddings from frozen MiniLM features (the text tower alone), with the colours
        the titles name when the tower reads them (Dataset.colour_mentions)."""
        tower = self.text_encoder.get_layer("text_tower")
        if not isinstance(tower.input, dict):
            return _predict(tower, features, 4096)
        if colour_mentions is None:
            raise ValueError(
                "this model reads the colours titles name; pass colour_mentions "
                "(a dataset from `dvc repro preprocess` has them)"
            )
        return _predict(
            tower, {"text_features": features, "colour_mentions": colour_mentions}, 4096
        )

    def score_embeddings(
        self, image_embeddings: np.ndarray, text_embeddings: np.ndarray, batch_size: int = 8192
    ) -> np.ndarray:
        """Match scores in [0, 1] of row-aligned image and text embeddings."""
        scores = []
        for start in range(0, len(image_embeddings), batch_size):
            stop = start + batch_size
            scores.append(
                np.asarray(
                    self.scorer(
                        [image_embeddings[start:stop], text_embeddings[start:stop]], training=False
                    )
                ).reshape(-1)
            )
        return np.concatenate(scores) if scores else np.zeros(0, dtype="float32")


def _predict(model, inputs, batch_size: int, call=None) -> np.ndarray:
    """model's outputs for inputs (an array, or a dict of row-aligned arrays), a batch at a
    time. call(model, batch) computes them (default: calling the model eagerly)."""
    # By default the model is called eagerly: no retracing for every new batch shape.
    rows = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)

    def batch(start: int):
        if isinstance(inputs, dict):
            return {name: array[start : start + batch_size] for name, array in inputs.items()}
        return inputs[start : start + batch_size]

    call = call or (lambda model, inputs: model(inputs, training=False))
    outputs = [np.asarray(call(model, batch(start))) for start in range(0, rows, batch_size)]
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), dtype="float32")
    return np.concatenate(outputs)
