"""CLIP's byte-level BPE tokenizer (OpenAI CLIP's `simple_tokenizer`), written for NumPy and the standard library.

Pipeline, as OpenAI CLIP does it:
1. Clean: `ftfy.fix_text`, `html.unescape` twice, whitespace runs to one space, strip, lowercase.
2. Split into words with CLIP's pattern, case-insensitive:
   `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`
   (letter runs, single digits, runs of other non-space characters). `split_words` scans this by hand with
   `unicodedata`, so the `regex` package is not needed.
3. Each word's UTF-8 bytes become printable characters (`bytes_to_chars`); the last one gets the `</w>` end-of-word
   marker; BPE then merges adjacent pairs, lowest merge rank (line order of the merges file) first.
4. Ids index the vocabulary: 256 byte characters, the same with `</w>`, the 48,894 merges, `<|startoftext|>`
   (49406), `<|endoftext|>` (49407): 49,408 entries.

ftfy is optional. Without it, cleaning starts with Unicode NFC normalisation instead (ftfy's last step, and what
transformers' CLIPTokenizer does in place of ftfy), and a warning says so. Ids then differ from CLIP's only for
text that ftfy would repair: mojibake, curly quotes, ligatures, full-width forms, control characters.

Two choices where CLIP's implementations disagree: whitespace is what `str.split` splits on (open_clip; OpenAI's
`regex` `\\s` leaves U+001C..U+001F, which ftfy removes anyway), and characters the Python build's Unicode
database leaves unassigned (Unicode 14 for Python 3.11) count as neither letters nor digits, where `regex` may
know them as such.

The merges file is OpenAI CLIP's, MIT licensed: see NOTICE-clip-bpe.txt.
"""

from __future__ import annotations

import gzip
import html
import unicodedata
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

try:
    import ftfy
except ImportError:  # optional: see the module docstring
    ftfy = None

BPE_PATH = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
NUM_MERGES = 49152 - 256 - 2  # CLIP uses the first 48,894 merges of the file
START, END = "<|startoftext|>", "<|endoftext|>"
_LITERALS = (START, END, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# CLIP's pattern is case-insensitive. After lowercasing, that matters for two characters only: U+017F (long s)
# folds to "s", so "'ſ" matches "'s"; U+0345 folds to a letter, so it matches none of the branches and is dropped.
_FOLD = str.maketrans({"\u017f": "s"})
_DROPPED = "\u0345"


def bytes_to_chars() -> dict[int, str]:
    """Byte -> printable character. Printable Latin-1 bytes stand for themselves; the 68 others (controls,
    space, soft hyphen) take the characters from U+0100 on, in byte order. Dict order is vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(rest)}


def clean_text(text: str) -> str:
    text = ftfy.fix_text(text) if ftfy is not None else unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def _kind(ch: str) -> str:
    """'L' letter, 'N' number, ' ' separator (whitespace, or a character CLIP's pattern skips), '' other."""
    if ch.isspace() or ch == _DROPPED:
        return " "
    cat = unicodedata.category(ch)[0]
    return cat if cat in "LN" else ""


def split_words(text: str) -> list[str]:
    """The words CLIP's pattern finds in cleaned text (see the module docstring)."""
    words, i, n = [], 0, len(text)
    while i < n:
        literal = text[i] in "'<" and next((t for t in _LITERALS if text[i:i + len(t)].translate(_FOLD) == t), None)
        kind = _kind(text[i])
        if literal:
            j = i + len(literal)
        elif kind == " ":
            i += 1
            continue
        elif kind == "N":
            j = i + 1
        else:  # a run of letters, or of "other" characters
            j = i + 1
            while j < n and _kind(text[j]) == kind:
                j += 1
        words.append(text[i:j])
        i = j
    return words


@lru_cache(maxsize=4)
def _load_bpe(bpe_path: str) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """(token -> id, merge pair -> rank) from a CLIP merges file. Shared by tokenizers; read-only."""
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]  # line 0 is a version header
    chars = list(bytes_to_chars().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [START, END]
    encoder = {tok: i for i, tok in enumerate(vocab)}
    ranks = {m: r for r, m in enumerate(merges)}
    if len(encoder) != 2 * 256 + NUM_MERGES + 2 or len(ranks) != NUM_MERGES:
        raise ValueError(f"{bpe_path}: not CLIP's merges file (duplicate or missing merges)")
    return encoder, ranks


class CLIPTokenizer:
    """`tok(texts)` -> int64 array (batch, context_length): start id, BPE ids, end id, then `pad_token_id`.
    Longer texts are cut so that the end id is the last one kept. SD 1.x pads with the end id 49407,
    SD 2.x (OpenCLIP) with 0."""

    def __init__(self, pad_token_id: int, context_length: int = 77, bpe_path: str | Path = BPE_PATH):
        self.encoder, self.ranks = _load_bpe(str(bpe_path))
        self.vocab_size = len(self.encoder)
        self.bos_token_id, self.eos_token_id = self.encoder[START], self.encoder[END]
        if not (isinstance(pad_token_id, (int, np.integer)) and 0 <= pad_token_id < self.vocab_size):
            raise ValueError(f"pad_token_id must be an id in [0, {self.vocab_size}), got {pad_token_id!r}")
        if not (isinstance(context_length, (int, np.integer)) and context_length >= 2):
            raise ValueError(f"context_length must be an int >= 2, got {context_length!r}")
        self.pad_token_id, self.context_length = int(pad_token_id), int(context_length)
        self._byte_chars = bytes_to_chars()
        self._cache: dict[str, list[int]] = {START: [self.bos_token_id], END: [self.eos_token_id]}
        if ftfy is None:
            warnings.warn("ftfy is not installed: CLIP text cleaning falls back to NFC normalisation; ids can "
                          "differ from CLIP's for text ftfy would repair (pip install ftfy)", stacklevel=2)

    @classmethod
    def from_config(cls, cfg, bpe_path: str | Path = BPE_PATH) -> "CLIPTokenizer":
        """From a `reference.configs.TextEncoderConfig`; checks its vocabulary size and special ids."""
        tok = cls(cfg.pad_token_id, cfg.max_position_embeddings, bpe_path)
        want = (tok.vocab_size, tok.bos_token_id, tok.eos_token_id)
        got = (cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id)
        if got != want:
            raise ValueError(f"config (vocab_size, bos_token_id, eos_token_id) = {got}, CLIP's BPE has {want}")
        return tok

    def bpe(self, word: str) -> list[int]:
        """Ids of one word (a string of byte characters). Cached per word."""
        if word in self._cache:
            return self._cache[word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            best = min(zip(parts, parts[1:]), key=lambda pair: self.ranks.get(pair, NUM_MERGES))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = self._cache[word] = [self.encoder[p] for p in parts]
        return ids

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text`, without start and end ids."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = []
        for word in split_words(clean_text(text)):
            ids += self.bpe("".join(self._byte_chars[b] for b in word.encode("utf-8")))
        return ids

    def __call__(self, texts: str | list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        out = np.full((len(texts), self.context_length), self.pad_token_id, dtype=np.int64)
        for row, text in zip(out, texts):
            ids = [self.bos_token_id] + self.encode(text)[:self.context_length - 2] + [self.eos_token_id]
            row[:len(ids)] = ids
        return out
