"""reference.tokenizer against two independent CLIP tokenizers.

Oracle 1, transformers' CLIPTokenizer (the Rust `tokenizers` BPE), built offline from a vocab.json and merges.txt
written here the way openai/clip-vit-large-patch14 ships them; its pad token is <|endoftext|> (SD 1.x) or "!"
(SD 2.x). It does not run CLIP's text cleaning (no ftfy, no html.unescape), and it finds <|startoftext|> /
<|endoftext|> in the raw text before lowercasing, so it gets the text already cleaned by CLIP's recipe, written
out below with ftfy and html directly.

Oracle 2, open_clip's SimpleTokenizer, a copy of OpenAI's, the whole pipeline (cleaning included). It pads with 0
(SD 2.x) and names its special tokens <start_of_text> / <end_of_text> where OpenAI CLIP has <|startoftext|> /
<|endoftext|>, so prompts spelling either literally are compared against transformers only.
"""

import gzip
import html
import importlib.util
import json
import random
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

import sdcl.reference.tokenizer as rt
from sdcl.reference.configs import SD15, SD21_BASE, TINY_SD1, TINY_SD2, TextEncoderConfig
from sdcl.reference.tokenizer import CLIPTokenizer

BOS, EOS = 49406, 49407  # <|startoftext|>, <|endoftext|>: the last two of CLIP's 49,408 ids
CTX = 77
CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

LONG_WORDS = " ".join(f"word{i} number {i * 7919} and more" for i in range(40))

HOSTILE = [
    "a photo of an astronaut riding a horse on mars",
    "",
    "   \n\t  ",
    # accents, precomposed and decomposed (ftfy composes them), upper case
    "Café crème brûlée à la française, naïve façade, ÉCOLE ÜBER Straße",
    "cafe\u0301 nai\u0308ve \u00c5ngstro\u0308m",
    # CJK, Hangul, Arabic, Devanagari, Greek, Cyrillic
    "東京の夜景、桜と富士山。中文測試 한국어 텍스트 مرحبا بالعالم नमस्ते Ελληνικά Привет мир",
    # emoji: ZWJ sequences, skin tones, flags, variation selectors
    "🐱‍👤 cat ninja 👩🏽‍🚀🚀✨ 🇯🇵🇺🇸 ❤️ ☃︎",
    # stacked combining marks
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǒ̏ t̸e̶x̷t̴",
    # HTML entities, one and two levels deep, numeric ones
    "Tom &amp; Jerry &lt;3 it&#39;s &quot;fine&quot; &amp;amp; &amp;lt;b&amp;gt; &#x1F600; &#233;t&#233; a&nbsp;b",
    "e&#769; &#8217;quoted&#8217; &copy; 2024 &unknown; & &; &#;",
    # whitespace runs, tabs, newlines, CR, NBSP, ideographic space, zero-width characters
    "  lots\tof\n\nwhite   space \r\n end  \u00a0 nbsp \u3000 ideographic \u2003em\u200bzwsp\ufeffbom ",
    # punctuation runs, brackets, quotes next to contractions, slashes, underscores
    "wow!!! ... ?!?! --- ((((masterpiece)))) [[x]] {y} *** :) ;-) <3 //path/to_file.png @user #tag $5 100% ~~",
    "!!'s ''s 's't're've'm'll'd 'S 'T 'RE `quote` \"double\" it's-it's",
    # numbers: digits split one by one, decimals, other scripts' digits, fractions, superscripts, roman numerals
    "1234567890 3.14159 1,000,000 -42 0x1F ½ ¾ ² ³ Ⅻ ٣٤ ४५ ①②",
    # contractions, upper and mixed case
    "it's don't they're we've I'm you'll he'd IT'S DON'T They'Re o'clock rock'n'roll",
    # what ftfy repairs: curly quotes, mojibake, ligatures, full-width forms, control characters
    "“quoted” ‘single’ it’s — dash",
    "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows. Ã©tÃ©",
    "ﬁne ﬂower ＡＢＣ１２３ ｶﾀｶﾅ a\x00b\x07c\x1cd\x7fe",
    # long: truncation at 77 with the end id last
    "a " * 75,
    "a " * 76,
    "masterpiece, best quality, " * 20,
    LONG_WORDS,
    "supercalifragilisticexpialidocious" * 5 + " pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
]
# CLIP's pattern is case-insensitive, transformers' is not: "'ſ" matches "'s", U+0345 matches no branch at all.
CASE_FOLD_QUIRKS = ["the 'ſ and 'ſt", "a\u0345b !\u0345! \u0345"]
# OpenAI CLIP and transformers treat these as the special tokens; open_clip's copy names them differently.
SPECIAL_LITERALS = ["hello <|endoftext|> world", "x<|startoftext|>y <|ENDOFTEXT|>", "<start_of_text> <end_of_text>"]
# transformers takes special tokens out of the text before splitting it, CLIP's pattern finds them only where a
# word starts: "!<|endoftext|>" is "!<|", "endoftext", "|>" in CLIP. Only the `regex` check covers these.
GLUED_SPECIALS = ["!<|endoftext|> x<|startoftext|>", "a.<|startoftext|>"]


def clip_clean(text):
    """OpenAI CLIP's cleaning, written out here: the part transformers' tokenizer does not do."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def _random_prompts(n, seed=0):
    """Random strings over a pool of hostile characters."""
    pool = ("abcxyzABCXYZ éÉüßſ\u0301\u0308\u0345'''sStTrRvVmMlLdD 0123456789½²٣ !!..,,;:??--__()<>|&#;"
            "東京桜한국مرحبا🐱🚀\u200d\u200b\ufe0f\t\n  ")
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 60))) for _ in range(n)]


@pytest.fixture(scope="module")
def tok_sd1():
    return CLIPTokenizer(pad_token_id=EOS)


@pytest.fixture(scope="module")
def tok_sd2():
    return CLIPTokenizer(pad_token_id=0)


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory):
    """vocab.json and merges.txt as openai/clip-vit-large-patch14 has them, from the shipped merges file, with
    transformers' own byte -> unicode table."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path = tmp_path_factory.mktemp("clip-vit-large-patch14")
    lines = gzip.open(rt.BPE_PATH, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    assert lines[0].startswith("\"bpe_simple_vocab_16e6.txt#version") and len(merges) == 48894
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + [m.replace(" ", "") for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hf_sd1(hf_files):
    from transformers import CLIPTokenizer as HFCLIPTokenizer

    tok = HFCLIPTokenizer.from_pretrained(hf_files)  # pad = <|endoftext|>, as SD 1.x
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (BOS, EOS, EOS)
    return tok


@pytest.fixture(scope="module")
def hf_sd2(hf_files):
    from transformers import CLIPTokenizer as HFCLIPTokenizer

    tok = HFCLIPTokenizer.from_pretrained(hf_files, pad_token="!")  # as stabilityai/stable-diffusion-2-1
    assert tok.pad_token_id == 0
    return tok


@pytest.fixture(scope="module")
def open_clip_tokenize():
    """open_clip/tokenizer.py loaded on its own: the package __init__ imports torchvision, not needed here."""
    for mod in ("ftfy", "regex", "torch"):      # what open_clip's tokenizer imports: a missing one fails the test
        importlib.import_module(mod)
    spec = importlib.util.find_spec("open_clip")
    assert spec is not None, "open_clip_torch is not installed: pip install --no-deps open_clip_torch (README set-up)"
    path = Path(spec.submodule_search_locations[0]) / "tokenizer.py"
    mod_spec = importlib.util.spec_from_file_location("_open_clip_tokenizer_oracle", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return lambda texts, context_length=CTX: module.tokenize(texts, context_length=context_length).numpy()


def _hf(tok, texts, context_length=CTX):
    enc = tok([clip_clean(t) for t in texts], padding="max_length", truncation=True, max_length=context_length,
              return_tensors="np")
    return enc["input_ids"].astype(np.int64)


def _check(ours, theirs, texts):
    assert ours.dtype == np.int64 and ours.shape == theirs.shape == (len(texts), theirs.shape[1])
    for text, a, b in zip(texts, ours, theirs):
        assert a.tolist() == b.tolist(), f"prompt {text!r}"


# ---- oracle 1: transformers -----------------------------------------------------------------------------------

TRANSFORMERS_SETS = [HOSTILE, SPECIAL_LITERALS, _random_prompts(150)]


@pytest.mark.parametrize("texts", TRANSFORMERS_SETS, ids=["hostile", "specials", "random"])
def test_matches_transformers_sd1_padding(tok_sd1, hf_sd1, texts):
    texts = [t.replace("ſ", "").replace("\u0345", "") for t in texts]  # see test_case_fold_quirks_differ...
    _check(tok_sd1(texts), _hf(hf_sd1, texts), texts)


@pytest.mark.parametrize("texts", TRANSFORMERS_SETS, ids=["hostile", "specials", "random"])
def test_matches_transformers_sd2_padding(tok_sd2, hf_sd2, texts):
    # pad_token="!" makes "!" an added token, split out before BPE: see test_sd2_exclamation_differs...
    texts = [t.replace("ſ", "").replace("\u0345", "").replace("!", "") for t in texts]
    _check(tok_sd2(texts), _hf(hf_sd2, texts), texts)


def test_ftfy_fallback_matches_transformers(hf_sd1, monkeypatch):
    """Without ftfy the cleaning is NFC + html.unescape; transformers does NFC and no unescaping."""
    monkeypatch.setattr(rt, "ftfy", None)
    with pytest.warns(UserWarning, match="ftfy"):
        tok = CLIPTokenizer(pad_token_id=EOS)
    texts = ["cafe\u0301 nai\u0308ve", "“quoted” it’s ﬁne", "Tom &amp; Jerry &amp;lt;3", "  A\tb\n\nC  "]
    want = hf_sd1([html.unescape(html.unescape(t)) for t in texts], padding="max_length", max_length=CTX,
                  truncation=True, return_tensors="np")["input_ids"]
    _check(tok(texts), want.astype(np.int64), texts)


# ---- oracle 2: open_clip ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("texts", [HOSTILE + CASE_FOLD_QUIRKS, _random_prompts(300, seed=1)], ids=["hostile", "random"])
def test_matches_open_clip(tok_sd2, open_clip_tokenize, texts):
    _check(tok_sd2(texts), open_clip_tokenize(texts), texts)


def test_matches_open_clip_short_context(open_clip_tokenize):
    texts = ["a photo of a cat sitting on a mat", "hi", LONG_WORDS]
    _check(CLIPTokenizer(pad_token_id=0, context_length=10)(texts), open_clip_tokenize(texts, 10), texts)


def test_case_fold_quirks_differ_from_transformers(tok_sd1, hf_sd1, open_clip_tokenize):
    """Where CLIP's case-insensitive pattern and transformers disagree we follow CLIP (open_clip)."""
    for text in CASE_FOLD_QUIRKS:
        assert CLIPTokenizer(pad_token_id=0)(text).tolist() == open_clip_tokenize([text]).tolist()
        assert tok_sd1(text).tolist() != _hf(hf_sd1, [text]).tolist()


def test_sd2_exclamation_differs_from_transformers(tok_sd2, hf_sd2, open_clip_tokenize):
    """transformers with pad_token="!" never merges "!" with its neighbours; OpenCLIP, which SD 2.x was trained
    with, does, and so do we."""
    text = "wow!!! (masterpiece!)"
    assert tok_sd2(text).tolist() == open_clip_tokenize([text]).tolist()
    assert tok_sd2(text).tolist() != _hf(hf_sd2, [text]).tolist()


# ---- the word split against CLIP's pattern run by the `regex` package -----------------------------------------

def test_split_matches_clip_pattern_on_every_character():
    import regex

    pattern = regex.compile(CLIP_PATTERN, regex.IGNORECASE)
    # Characters cleaned text can hold: assigned in this Python's Unicode database (the `regex` package may know
    # a newer one), no surrogates, and not U+001C..U+001F (str.split whitespace, removed by the cleaning).
    chars = [chr(i).lower() for i in range(sys.maxunicode + 1)
             if unicodedata.category(chr(i)) not in ("Cn", "Cs") and not 0x1C <= i <= 0x1F]
    shuffled = chars[:]
    random.Random(0).shuffle(shuffled)
    prompts = " ".join(" ".join(HOSTILE + CASE_FOLD_QUIRKS + SPECIAL_LITERALS + GLUED_SPECIALS).split()).lower()
    for text in ("".join(chars), "".join(shuffled), prompts):
        assert rt.split_words(text) == pattern.findall(text)


# ---- what a user sees -----------------------------------------------------------------------------------------

def test_layout_and_known_ids(tok_sd1, tok_sd2):
    for tok in (tok_sd1, tok_sd2):
        assert (tok.vocab_size, tok.bos_token_id, tok.eos_token_id, tok.context_length) == (49408, BOS, EOS, CTX)
    # byte characters come first, printable ASCII from "!" (id 0), then their "</w>" forms from id 256
    assert tok_sd1.encode("a") == [256 + ord("a") - ord("!")]
    assert tok_sd1.encode("!") == [256]
    assert tok_sd1.encode("") == [] and tok_sd1.encode(" \t\n ") == []
    out = tok_sd1("")
    assert out.shape == (1, CTX) and out.dtype == np.int64
    assert out[0, :2].tolist() == [BOS, EOS] and (out[0, 2:] == EOS).all()
    assert tok_sd2("")[0].tolist() == [BOS, EOS] + [0] * (CTX - 2)


def test_batch_shape_truncation_and_padding(tok_sd1, tok_sd2):
    texts = ["a cat", "a " * 200, ""]
    for tok, pad in ((tok_sd1, EOS), (tok_sd2, 0)):
        out = tok(texts)
        assert out.shape == (3, CTX) and out.dtype == np.int64
        assert (out[:, 0] == BOS).all()
        assert out[1].tolist() == [BOS] + [320] * (CTX - 2) + [EOS]  # "a</w>" = 320: see test_layout_and_known_ids
        assert out[0, 3] == EOS and (out[0, 4:] == pad).all()  # "cat</w>" is one token
        assert tok(tuple(texts)).tolist() == out.tolist()
    assert tok_sd1([]).shape == (0, CTX)


@pytest.mark.parametrize("bad", [None, 123, b"bytes", ["ok", None], ["ok", b"x"], {"a": 1}, np.array(["a"])])
def test_non_string_input_raises(tok_sd1, bad):
    with pytest.raises(TypeError, match="str"):
        tok_sd1(bad)


def test_encode_non_string_raises(tok_sd1):
    with pytest.raises(TypeError, match="str"):
        tok_sd1.encode(b"a cat")


def test_from_config():
    assert CLIPTokenizer.from_config(SD15.text_encoder)("x")[0, -1] == EOS
    assert CLIPTokenizer.from_config(SD21_BASE.text_encoder)("x")[0, -1] == 0
    assert CLIPTokenizer.from_config(TINY_SD1.text_encoder).pad_token_id == EOS
    assert CLIPTokenizer.from_config(TINY_SD2.text_encoder).pad_token_id == 0
    assert CLIPTokenizer.from_config(TextEncoderConfig(max_position_embeddings=20))("x").shape == (1, 20)
    with pytest.raises(ValueError, match="vocab_size"):
        CLIPTokenizer.from_config(TextEncoderConfig(vocab_size=1000))
    with pytest.raises(ValueError, match="bos_token_id"):
        CLIPTokenizer.from_config(TextEncoderConfig(bos_token_id=1, eos_token_id=2))


@pytest.mark.parametrize("kwargs", [dict(pad_token_id=-1), dict(pad_token_id=49408), dict(pad_token_id="0"),
                                    dict(pad_token_id=0, context_length=1)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        CLIPTokenizer(**kwargs)
