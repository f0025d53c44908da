"""OpenAI's CLIP tokenizer rebuilt from its BPE file: the ids equal those of OpenAI's own
``clip/simple_tokenizer.py`` (the expected ids below were produced by it, from the clip-anytorch
2.6.0 wheel with ftfy installed, and checked against this tokenizer on every pool caption too)."""

import gzip

import pytest

from dreamfusion.errors import UserError
from dreamfusion.evaluation.clip_embedder import clean_caption
from dreamfusion.evaluation.clip_vocabulary import (END_OF_TEXT, MERGE_COUNT, START_OF_TEXT, VOCAB_SIZE,
                                                    bpe_vocabulary_path, bytes_to_unicode, read_merges)

SOT, EOT = 49406, 49407

# (text, OpenAI's SimpleTokenizer().encode(text)), without the start and end tokens
PLAIN = [
    ("a hamburger", [320, 33928]),
    ("a ceramic teapot, 3D render", [320, 15112, 40749, 267, 274, 323, 13024]),
    ("it's a cat's toy; they'll like it!", [585, 568, 320, 2368, 568, 5988, 282, 889, 1342, 789, 585, 256]),
    ("café crème brûlée", [15304, 1075, 12138, 614, 711, 127, 119, 75, 13489]),
    ("a red panda 🐼 eating bamboo", [320, 736, 12952, 46234, 4371, 16748]),
    ("12345 apples & 67 oranges", [272, 273, 274, 275, 276, 14032, 261, 277, 278, 32417]),
    ("  Tabs\tand\nnewlines  ", [29163, 537, 1218, 3418]),
    ("ÆØÅ smörgåsbord naïve", [42495, 17483, 127, 354, 978, 31762, 70, 23176, 82, 36891, 1097, 35689, 563]),
    ("", []),
]
# text OpenAI cleans with ftfy + html.unescape first: equal only after clean_caption
MESSY = [
    ("fish &amp; chips", [2759, 261, 8855]),
    ("“smart quotes” and ‘single’ ones", [257, 4115, 5808, 257, 537, 568, 17005, 262, 1575]),
    ("ﬁne ﬂoral ligatures", [3797, 10732, 554, 5314, 2288]),
    ("ＦＵＬＬwidth ＡＢＣ１２３", [9407, 23571, 5334, 272, 273, 274]),
    ("&amp;lt;b&amp;gt;bold", [283, 321, 285, 8911]),
]


def test_byte_table_is_openais():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("a")] == "a" and table[ord("~")] == "~" and table[0xE9] == "é"
    # the 68 unprintable bytes follow from U+0100 in byte order: NUL first, space is the 33rd
    assert table[0] == "\u0100" and table[ord(" ")] == "\u0120" and table[0xAD] == "\u0143"
    assert list(table)[:3] == [ord("!"), ord('"'), ord("#")] and list(table)[188] == 0


def test_vocabulary_layout(clip_tokenizer):
    vocab = clip_tokenizer.get_vocab()
    assert len(vocab) == VOCAB_SIZE == 49408 and MERGE_COUNT == 48894
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["a</w>"] == 320
    assert vocab[START_OF_TEXT] == SOT and vocab[END_OF_TEXT] == EOT
    assert clip_tokenizer.model_max_length == 77 and clip_tokenizer.pad_token_id == EOT


@pytest.mark.parametrize("text, ids", PLAIN, ids=[f"plain{i}" for i in range(len(PLAIN))])
def test_ids_match_openais_tokenizer(clip_tokenizer, text, ids):
    assert clip_tokenizer(text).input_ids == [SOT, *ids, EOT]


@pytest.mark.parametrize("text, ids", MESSY, ids=[f"messy{i}" for i in range(len(MESSY))])
def test_cleaned_captions_match_openais_tokenizer(clip_tokenizer, text, ids):
    assert clip_tokenizer(clean_caption(text)).input_ids == [SOT, *ids, EOT]


def test_padding_to_clips_context(clip_tokenizer):
    tokens = clip_tokenizer(["a hamburger"], padding="max_length", max_length=77, truncation=True)
    assert tokens.input_ids[0] == [SOT, 320, 33928, EOT] + [EOT] * 73
    assert tokens.attention_mask[0] == [1] * 4 + [0] * 73


def test_missing_vocabulary_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMFUSION_CLIP_VOCAB", str(tmp_path / "nowhere.txt.gz"))
    with pytest.raises(UserError, match="make models") as error:
        bpe_vocabulary_path()
    assert "\n" not in str(error.value)


def test_other_file_is_refused(tmp_path):
    path = tmp_path / "other.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("#version: 0.2\nt h\nth e</w>\n")
    with pytest.raises(UserError, match="not OpenAI's CLIP BPE file"):
        read_merges(path)
