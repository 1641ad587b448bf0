"""The frozen image network through TensorFlow Lite's XNNPACK CPU kernels.

EfficientNet-Lite0 was designed for TensorFlow Lite: its depthwise convolutions run about
2x faster there than through Keras' compiled predict function on 2 cores (220 against 110
photos/s at 224 px), and the features stay within 1e-5 of Keras'
(tests/unit/test_lite.py). The runtime is one photo per call, so a photo's features never
depend on which other photos share its batch, and the same on 1 or 2 threads.

$PMATCH_IMAGE_RUNTIME picks it: `tflite` (default) or `keras` (the compiled predict
function). Where TensorFlow Lite is missing or a network does not convert, pmatch warns
once and uses Keras.

Converting takes about 5 s, so the converted network is cached in the pmatch cache folder
(pmatch.model.pretrained.cache.cache_dir), keyed by the network's weights, input shape and
TensorFlow version; a read-only folder just means converting once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import warnings
import weakref

import numpy as np

RUNTIMES = ("tflite", "keras")
# Converted networks of this process, by the Keras network they came from.
_CONVERTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def image_runtime() -> str:
    """$PMATCH_IMAGE_RUNTIME: which runtime computes frozen image features."""
    runtime = os.environ.get("PMATCH_IMAGE_RUNTIME", "tflite").strip().lower() or "tflite"
    if runtime not in RUNTIMES:
        raise ValueError(
            f"PMATCH_IMAGE_RUNTIME={runtime!r} is not one of {', '.join(RUNTIMES)}; unset it "
            "for the default (tflite)."
        )
    return runtime


class LiteNetwork:
    """A converted single-input network, called on a batch like Keras' predict_on_batch."""

    def __init__(self, flatbuffer: bytes, threads: int | None = None):
        import tensorflow as tf

        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it moves to the ai-edge-litert package; it is
            # still TensorFlow 2.21's (pinned) interpreter, and the one this was tested on.
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(
                model_content=flatbuffer, num_threads=threads or _available_cores()
            )
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


def lite_network(network) -> LiteNetwork | None:
    """network (a frozen Keras model taking a batch of photos) as a LiteNetwork, converted
    once per process and cached on disk; None when the runtime is keras or conversion fails
    (with a warning on stderr)."""
    if image_runtime() != "tflite":
        return None
    if network in _CONVERTED:
        return _CONVERTED[network]
    try:
        converted = LiteNetwork(_flatbuffer(network))
    except Exception as error:  # any failure of the optional runtime falls back to Keras
        print(
            f"pmatch: TensorFlow Lite could not run {network.name} ({type(error).__name__}: "
            f"{error}); photos are encoded with Keras instead (slower, same features to "
            "1e-5). Set PMATCH_IMAGE_RUNTIME=keras to skip this attempt.",
            file=sys.stderr,
        )
        converted = None
    _CONVERTED[network] = converted
    return converted


def _flatbuffer(network) -> bytes:
    from pmatch.model.pretrained.cache import cache_dir

    path = cache_dir() / "tflite" / f"{network.name}-{_network_digest(network)}.tflite"
    if path.exists():
        return path.read_bytes()
    flatbuffer = convert(network)
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


def _network_digest(network) -> str:
    import tensorflow as tf

    digest = hashlib.sha256()
    digest.update(f"{tf.__version__}|{network.input.shape}|{network.input.dtype}".encode())
    for weight in network.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
