"""A colour histogram of a product photo's foreground, as a Keras layer.

Colour variants of one product differ mostly in colour, which ImageNet features keep only
weakly; this layer gives the matcher an explicit, cheap colour signal. Being a layer, the
same code computes features in preprocess and runs inside the saved model at scoring time.
"""

from __future__ import annotations

import keras
from keras import layers, ops

HUE_BINS = 12
GREY_BINS = 4
COLOUR_FEATURE_DIM = HUE_BINS + GREY_BINS + 2


@keras.saving.register_keras_serializable(package="pmatch")
class ColourHistogram(layers.Layer):
    """uint8 RGB photos in, (HUE_BINS + GREY_BINS + 2) colour features out.

    Pixels brighter than background_level in every channel count as white background and
    are left out. Of the rest, saturated pixels vote for one of HUE_BINS hues and the others
    for one of GREY_BINS brightness levels (black to white); the shares are normalised over
    the foreground, followed by its mean saturation and mean brightness.
    """

    def __init__(
        self,
        background_level: float = 0.92,
        saturation_level: float = 0.2,
        pooled_size: int = 32,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.background_level = background_level
        self.saturation_level = saturation_level
        self.pooled_size = pooled_size

    def call(self, images):
        pixels = ops.cast(images, "float32") / 255.0
        # A coarse grid is enough for colour shares and keeps the layer cheap at 224 px.
        pixels = ops.image.resize(
            pixels, (self.pooled_size, self.pooled_size), interpolation="area"
        )
        hsv = ops.image.rgb_to_hsv(pixels)
        hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        foreground = ops.cast(ops.min(pixels, axis=-1) <= self.background_level, "float32")
        chromatic = ops.cast(saturation > self.saturation_level, "float32") * foreground
        grey = (1.0 - ops.cast(saturation > self.saturation_level, "float32")) * foreground
        hue_bin = ops.one_hot(
            ops.cast(ops.minimum(hue * HUE_BINS, HUE_BINS - 1), "int32"), HUE_BINS
        )
        grey_bin = ops.one_hot(
            ops.cast(ops.minimum(value * GREY_BINS, GREY_BINS - 1), "int32"), GREY_BINS
        )
        counts = ops.concatenate(
            [
                ops.sum(hue_bin * chromatic[..., None], axis=(1, 2)),
                ops.sum(grey_bin * grey[..., None], axis=(1, 2)),
            ],
            axis=-1,
        )
        area = ops.maximum(ops.sum(foreground, axis=(1, 2)), 1.0)
        shares = counts / area[:, None]
        mean_saturation = ops.sum(saturation * foreground, axis=(1, 2)) / area
        mean_value = ops.sum(value * foreground, axis=(1, 2)) / area
        return ops.concatenate([shares, mean_saturation[:, None], mean_value[:, None]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], COLOUR_FEATURE_DIM)

    def get_config(self):
        return {
            **super().get_config(),
            "background_level": self.background_level,
            "saturation_level": self.saturation_level,
            "pooled_size": self.pooled_size,
        }
