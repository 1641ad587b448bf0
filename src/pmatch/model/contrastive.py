"""The towers' contrastive phase: matched photos and texts pulled together in one space."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import layers, ops

from pmatch.config import TrainParams
from pmatch.features.dataset import Dataset
from pmatch.model.fitting import STEPS_PER_EXECUTION

MAX_LOGIT_SCALE = math.log(100.0)


class BatchSimilarity(layers.Layer):
    """Cosine similarities of every image with every text in a batch, times a learnable
    inverse temperature (initialised to 1/0.07, capped at 100 as in CLIP)."""

    def build(self, input_shape):
        self.logit_scale = self.add_weight(
            shape=(),
            name="logit_scale",
            initializer=keras.initializers.Constant(math.log(1 / 0.07)),
        )

    def call(self, inputs):
        image_embeddings, text_embeddings = inputs
        scale = ops.exp(ops.minimum(self.logit_scale, MAX_LOGIT_SCALE))
        return ops.matmul(image_embeddings, ops.transpose(text_embeddings)) * scale


def symmetric_info_nce(product_ids, logits):
    """InfoNCE both ways: row i's image must pick its product's texts among the batch, and
    text i its product's images.

    product_ids: one id per row of the batch. Rows of one product (its colour variants) are
    positives of each other, as in supervised contrastive learning: their texts differ only
    in the colour word, which the colour head reads, so the shared space is not asked to
    pull them apart. With all ids distinct this is CLIP's loss (the diagonal is the label).
    """
    product_ids = ops.reshape(product_ids, (-1,))
    same_product = ops.equal(product_ids[:, None], product_ids[None, :])
    # log(1) on positives, a large negative number elsewhere (log(0) would give NaN grads).
    log_positive = ops.where(same_product, 0.0, -1e9)

    def pick_positives(rows):
        log_probability = rows - ops.logsumexp(rows, axis=1, keepdims=True)
        return -ops.logsumexp(log_probability + log_positive, axis=1)

    return (pick_positives(logits) + pick_positives(ops.transpose(logits))) / 2


class ContrastiveTrainer(keras.Model):
    """The two towers on matched rows: photo and text inputs in, the batch's image-text
    similarity logits out, trained with symmetric_info_nce. Every weight of both towers
    and the temperature train. Training only: it shares the towers' weights and is never
    saved (the matching model is)."""

    def __init__(self, image_tower: keras.Model, text_tower: keras.Model, **kwargs):
        super().__init__(name="contrastive_trainer", **kwargs)
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.similarity = BatchSimilarity(name="batch_similarity")

    def call(self, inputs, training=False):
        image = self.image_tower(inputs[self.image_tower.input.name], training=training)
        text = self.text_tower(inputs[self.text_tower.input.name], training=training)
        return self.similarity([image, text])


def matched_rows(dataset: Dataset, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each catalogue row of a split as a matched (photo, text) example, as the towers read
    it, and each row's product as a number (the contrastive loss's labels)."""
    rows = dataset.items.index[dataset.items["split"] == split].to_numpy()
    products = pd.factorize(dataset.items["product_id"])[0].astype("float32")
    inputs = {
        dataset.image_input_name: dataset.image_inputs(
            dataset.items["image_index"].to_numpy()[rows]
        ),
        dataset.text_input_name: dataset.text_inputs(rows),
    }
    return inputs, products[rows]


def train_towers(
    image_tower, text_tower, dataset: Dataset, params: TrainParams, log: Path, verbose: int
):
    """Trains the towers with symmetric InfoNCE over the train rows (in-batch negatives, a
    product's colour variants as positives of each other, learnable temperature),
    early-stopped on the validation rows' loss; the best epoch's weights are kept.

    log: the CSV the history goes to (the best weights are checkpointed beside it).
    Returns the Keras history.
    """
    train_rows, val_rows = matched_rows(dataset, "train"), matched_rows(dataset, "val")
    if len(train_rows[1]) < 2 or len(val_rows[1]) < 2:
        raise ValueError(
            "the train or val split has fewer than 2 rows; the catalogue needs more products "
            "(or change preprocess.val_fraction / preprocess.test_fraction)"
        )
    trainer = ContrastiveTrainer(image_tower, text_tower)
    trainer.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss=symmetric_info_nce,
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    checkpoint = log.with_name(f"best-{log.stem}.weights.h5")
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor="val_loss", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.CSVLogger(log),
    ]
    # The targets are the rows' products: colour variants in one batch are positives.
    history = trainer.fit(
        *train_rows,
        validation_data=val_rows,
        epochs=params.num_epochs,
        batch_size=params.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    if checkpoint.exists():
        trainer.load_weights(checkpoint)
        checkpoint.unlink()
    return history
