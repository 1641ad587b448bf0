"""Frozen encoders through TensorFlow Lite's CPU kernels (XNNPACK): the only runtime that
computes pmatch's frozen features.

Photos: EfficientNet-Lite0 was designed for TensorFlow Lite: its depthwise convolutions run
about 2x faster there than through Keras' compiled predict function on 2 cores (220 against
110 photos/s at 224 px), and the features stay within 1e-5 of Keras'
(tests/unit/test_lite.py). The runtime is one photo per call, so a photo's features never
depend on which other photos share its batch, and the same on 1 or 2 threads.

Texts: MiniLM runs here with its weights in int8 and each token's activations quantised to
int8 as it goes (TensorFlow Lite's dynamic-range quantisation), about 3x faster than Keras
in float32 on 2 cores; the sentence embeddings keep a cosine above 0.99 to the float32 ones
(tests/unit/test_lite_text.py). Texts run sorted by length, each batch cut to its longest
text: padding is masked, so a text's embedding is the same to the bit whatever its batch
and padding.

Where a network does not convert or run, this raises instead of falling back to Keras:
features from another runtime would be filed in the feature store under this one's key.

Converting takes about 5 s, so a converted network is cached in the pmatch cache folder
(pmatch.features.weights.cache_dir), keyed by the network's weights, input shape,
quantisation and TensorFlow version; a read-only folder just means converting once per
process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import warnings
import weakref

import numpy as np

# Texts per TensorFlow Lite call: larger batches run no faster.
TEXT_BATCH = 64
# Converted networks of this process, by the Keras network they came from.
_CONVERTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CONVERTED_TEXT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class LiteNetwork:
    """A converted single-input network, called on a batch like Keras' predict_on_batch."""

    def __init__(self, flatbuffer: bytes, threads: int | None = None):
        self.interpreter = _interpreter(flatbuffer, threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, photos: np.ndarray) -> np.ndarray:
        photos = np.ascontiguousarray(photos, dtype=self.input["dtype"])
        expected = tuple(int(size) for size in self.input["shape"][1:])
        if photos.shape[1:] != expected:
            raise ValueError(
                f"photos of shape {photos.shape[1:]} given to a network converted for "
                f"{expected}; resize them to the model's image_size"
            )
        rows = []
        for photo in photos:
            self.interpreter.set_tensor(self.input["index"], photo[None])
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self.output["index"]).reshape(-1).copy())
        if not rows:
            width = int(np.prod(self.output["shape"][1:]))
            return np.zeros((0, width), dtype="float32")
        return np.stack(rows)


def lite_network(network) -> LiteNetwork:
    """network (a frozen Keras model taking a batch of photos) as a LiteNetwork, converted
    once per process and cached on disk. Raises RuntimeError where TensorFlow Lite cannot
    convert or run it."""
    if network in _CONVERTED:
        return _CONVERTED[network]
    try:
        converted = LiteNetwork(_flatbuffer(network))
    except Exception as error:
        raise RuntimeError(
            f"TensorFlow Lite could not convert or run {network.name} ({type(error).__name__}: "
            f"{error}); pmatch encodes photos through TensorFlow Lite only. Check that "
            "tensorflow-cpu is installed at the version requirements/lock.txt pins (`make "
            "setup`), and delete the converted copies in the tflite folder of the pmatch cache "
            "(pmatch.features.weights.cache_dir) if one is damaged."
        ) from error
    _CONVERTED[network] = converted
    return converted


def _flatbuffer(network) -> bytes:
    return _cached_flatbuffer(
        f"{network.name}-{_network_digest(network)}", lambda: convert(network)
    )


def _cached_flatbuffer(name: str, convert_network) -> bytes:
    """The flatbuffer cached as name.tflite, or convert_network() written there first."""
    from pmatch.features.weights import cache_dir

    path = cache_dir() / "tflite" / f"{name}.tflite"
    if path.exists():
        return path.read_bytes()
    flatbuffer = convert_network()
    temporary = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(flatbuffer)
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only cache folder: convert again in the next process
    finally:
        temporary.unlink(missing_ok=True)
    return flatbuffer


def convert(network) -> bytes:
    """The TensorFlow Lite flatbuffer of network for one photo at a time (float32 kernels,
    no quantisation)."""
    import tensorflow as tf

    # The converter exports the model through Keras first, which prints every captured
    # variable; that is noise in a scoring job's output.
    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(network).convert()


class LiteTextNetwork:
    """MiniLM converted for texts of any length, called on token ids and attention masks
    as pmatch.features.tokenizer.WordPieceTokenizer.encode() returns them."""

    def __init__(self, flatbuffer: bytes, threads: int | None = None):
        self.interpreter = _interpreter(flatbuffer, threads)
        self.inputs = {
            detail["name"]: detail["index"] for detail in self.interpreter.get_input_details()
        }
        self.output = self.interpreter.get_output_details()[0]
        self.shape = None

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        width = int(self.output["shape"][-1])
        output = np.zeros((len(ids), width), dtype="float32")
        lengths = np.asarray(mask).sum(axis=1)
        if len(ids) and lengths.min() < 1:
            row = int(np.argmin(lengths))
            raise ValueError(
                f"text {row} has an empty attention mask; encode texts with "
                "pmatch.features.tokenizer.WordPieceTokenizer.encode(), which always keeps "
                "[CLS] and [SEP]"
            )
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), TEXT_BATCH):
            rows = order[start : start + TEXT_BATCH]
            length = int(lengths[rows].max())
            self._run(ids[rows, :length], mask[rows, :length], output, rows)
        return output

    def _run(self, ids, mask, output, rows) -> None:
        if self.shape != ids.shape:
            for index in self.inputs.values():
                self.interpreter.resize_tensor_input(index, ids.shape)
            self.interpreter.allocate_tensors()
            self.shape = ids.shape
        arrays = {"input_ids": ids, "attention_mask": mask}
        for name, index in self.inputs.items():
            self.interpreter.set_tensor(index, np.ascontiguousarray(arrays[name], dtype=np.int32))
        self.interpreter.invoke()
        output[rows] = self.interpreter.get_tensor(self.output["index"])


def lite_text_network(encoder) -> LiteTextNetwork:
    """The MiniLM encoder (load_minilm's, any max_tokens) with int8 weights, converted once
    per process and cached on disk. Raises RuntimeError where TensorFlow Lite cannot convert
    or run it."""
    if encoder in _CONVERTED_TEXT:
        return _CONVERTED_TEXT[encoder]
    try:
        name = f"minilm-int8-{_weights_digest(encoder, 'int8, texts of any length')}"
        converted = LiteTextNetwork(_cached_flatbuffer(name, lambda: convert_text(encoder)))
    except Exception as error:
        raise RuntimeError(
            f"TensorFlow Lite could not convert or run MiniLM in int8 ({type(error).__name__}: "
            f"{error}); pmatch encodes texts through TensorFlow Lite only. Check that "
            "tensorflow-cpu is installed at the version requirements/lock.txt pins (`make "
            "setup`), and delete the converted copies in the tflite folder of the pmatch cache "
            "(pmatch.features.weights.cache_dir) if one is damaged."
        ) from error
    _CONVERTED_TEXT[encoder] = converted
    return converted


def convert_text(encoder) -> bytes:
    """The TensorFlow Lite flatbuffer of MiniLM for texts of any length, with int8 weights
    and dynamic-range quantised activations. encoder: load_minilm's Keras model, whose
    weights are copied into one built for any length."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from pmatch.features.minilm import build_minilm_encoder

    any_length = build_minilm_encoder(None)
    any_length.set_weights(encoder.get_weights())
    spec = tf.TensorSpec([None, None], tf.int32)
    function = tf.function(
        lambda ids, mask: any_length({"input_ids": ids, "attention_mask": mask}),
        input_signature=[
            tf.TensorSpec.from_spec(spec, name="input_ids"),
            tf.TensorSpec.from_spec(spec, name="attention_mask"),
        ],
    )
    # Keras 3 variables are not frozen by from_concrete_functions: fold them in first.
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    # from_concrete_functions logs (absl) that it wants a trackable_obj: this deprecated
    # path is the one that takes the folded constants.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    finally:
        absl.setLevel(level)


def _interpreter(flatbuffer: bytes, threads: int | None):
    """A TensorFlow Lite interpreter for flatbuffer on threads threads (default: every core
    this process may use)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it moves to the ai-edge-litert package; it is
        # still TensorFlow 2.21's (pinned) interpreter, and the one this was tested on.
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(
            model_content=flatbuffer, num_threads=threads or available_cores()
        )


def _network_digest(network) -> str:
    return _weights_digest(network, f"{network.input.shape}|{network.input.dtype}")


def _weights_digest(network, description: str) -> str:
    """A digest of network's weights, description and the TensorFlow version."""
    import tensorflow as tf

    digest = hashlib.sha256()
    digest.update(f"{tf.__version__}|{description}".encode())
    for weight in network.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
