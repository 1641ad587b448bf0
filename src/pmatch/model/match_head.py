"""The match head's phase: a calibrated [0, 1] score learned on labelled pairs."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

from pmatch.config import TrainParams
from pmatch.features.dataset import Dataset
from pmatch.model.fitting import fit_on_pairs


class MatchHeadTrainer(keras.Model):
    """Pair inputs in, the scorer's match probability out, through the towers with their
    colour columns. Its training step updates only trained_variables: the scorer's, and
    those of the towers listed in trained_towers. Training only, never saved.

    image_side / text_side: the towers with their colour columns (pmatch.model.matcher's
    build_image_tower, build_text_tower); scorer: the match head (build_scorer).
    trained_towers: the towers (inside the sides) that keep learning here, the heads over
    frozen pretrained features; a tower trained from scratch and the colour head are left
    as they are.
    """

    def __init__(self, image_side, text_side, scorer, trained_towers=(), **kwargs):
        super().__init__(name="match_head_trainer", **kwargs)
        self.image_side = image_side
        self.text_side = text_side
        self.scorer = scorer
        self.trained_towers = list(trained_towers)

    @property
    def trained_variables(self) -> list:
        """The variables a training step updates."""
        variables = list(self.scorer.trainable_variables)
        for tower in self.trained_towers:
            variables += tower.trainable_variables
        return variables

    @property
    def losses(self) -> list:
        """The regularisation penalties of the trained variables only: a frozen layer's
        (the colour head's L2) would add a constant to every loss this phase reports."""
        return [
            variable.regularizer(variable)
            for variable in self.trained_variables
            if variable.regularizer is not None
        ]

    def call(self, inputs, training=False):
        # The frozen parts see the same training flag as the rest: they hold no
        # BatchNormalization, and the colour head's dropout stays on while the scorer
        # learns, as it always did.
        image = self.image_side(side_inputs(self.image_side, inputs), training=training)
        text = self.text_side(side_inputs(self.text_side, inputs), training=training)
        return self.scorer([image, text], training=training)

    def train_step(self, data):
        import tensorflow as tf

        inputs, labels = data[0], data[1]
        variables = self.trained_variables
        with tf.GradientTape() as tape:
            scores = self(inputs, training=True)
            loss = self.compute_loss(x=inputs, y=labels, y_pred=scores, training=True)
        # Keras' own step weighs each batch's loss by its size in the epoch's mean.
        self._loss_tracker.update_state(loss, sample_weight=ops.shape(labels)[0])
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return self.compute_metrics(inputs, labels, scores)


def side_inputs(side: keras.Model, inputs: dict):
    """What side reads of the pair inputs (a dict keyed by input name)."""
    if isinstance(side.input, dict):
        return {name: inputs[name] for name in side.input}
    return inputs[side.input.name]


def train_match_head(
    image_side,
    text_side,
    scorer,
    trained_towers,
    dataset: Dataset,
    params: TrainParams,
    out_dir: Path,
    verbose: int,
) -> dict:
    """Trains the match head with binary cross-entropy on the train pairs (matches, random
    and hard negatives, plus train.colour_negatives: see pmatch.catalog.pairs.colour_negatives),
    early-stopped on the validation pairs (train.match_head_epochs, match_head_patience).

    image_side / text_side / scorer / trained_towers: as MatchHeadTrainer reads them. Heads
    over frozen features keep learning here (cheap); a CNN or word tower trained from
    scratch and the colour head stay as they are, so this costs seconds.
    Returns the phase's figures.
    """
    trainer = MatchHeadTrainer(image_side, text_side, scorer, trained_towers)
    extra_pairs = None
    if params.colour_negatives and dataset.colour_mentions is not None:
        from pmatch.catalog.pairs import colour_negatives

        train_pairs = dataset.split_pairs("train")
        extra_pairs = colour_negatives(
            dataset.items,
            dataset.colour_mentions,
            train_pairs.loc[train_pairs["label"] == 1, "image_row"],
            params.colour_negatives,
            params.seed,
        )
    # train.batch_size pairs per step at train.learning_rate: the same quality as half the
    # batch at half the rate (Luma over 9 runs, the sample over 3: docs/design.md),
    # in half the steps.
    history = fit_on_pairs(
        trainer,
        dataset,
        out_dir,
        verbose,
        learning_rate=params.learning_rate,
        epochs=params.match_head_epochs,
        batch_size=params.batch_size,
        patience=params.match_head_patience,
        colour=isinstance(text_side.input, dict),
        extra_train_pairs=extra_pairs,
    )
    best = int(np.argmin(history.history["val_loss"]))
    return {
        "match_head_epochs": len(history.history["val_loss"]),
        "match_head_val_loss": round(float(history.history["val_loss"][best]), 5),
        "match_head_val_auc": round(float(history.history["val_auc"][best]), 5),
        "colour_negative_pairs": 0 if extra_pairs is None else len(extra_pairs),
        "towers_fine_tuned": bool(trained_towers),
    }
