"""Prompt files of a batch: text, CSV and JSON lines become runs with stable, unique workspace names."""

import json

import pytest

from dreamfusion.errors import UserError
from dreamfusion.farm.prompts import read_batch, slugify


def test_text_file_with_comments_and_seeds(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a hamburger\n\n# not a prompt\nA Hamburger!\n")
    items = read_batch(path, seeds=[0, 1])
    assert [i.slug for i in items] == ["a-hamburger-s0", "a-hamburger-s1", "a-hamburger-s0-2", "a-hamburger-s1-2"]
    assert [i.seed for i in items] == [0, 1, 0, 1] and items[2].prompt == "A Hamburger!"
    assert [i.slug for i in read_batch(path)] == ["a-hamburger", "a-hamburger-2"]


def test_csv_and_jsonl_carry_options_seeds_names_and_images(tmp_path):
    (tmp_path / "duck_rgba.png").write_bytes(b"")
    csv_path = tmp_path / "batch.csv"
    csv_path.write_text('prompt,seed,options,name\na teapot,7,"--iters 50 --lambda_entropy 1e-4",\n'
                        'a snowman,,,my snowman\n')
    teapot, snowman = read_batch(csv_path, seeds=[3])
    assert (teapot.slug, teapot.seed, teapot.options) == ("a-teapot", 7, ("--iters", "50", "--lambda_entropy", "1e-4"))
    assert (snowman.slug, snowman.seed, snowman.options) == ("my-snowman", 3, ())
    jsonl = tmp_path / "batch.jsonl"
    jsonl.write_text(json.dumps({"image": "duck_rgba.png", "options": ["--iters", 20]}) + "\n")
    (duck,) = read_batch(jsonl)
    assert duck.prompt is None and duck.image == str((tmp_path / "duck_rgba.png").resolve())
    assert duck.slug == "duck" and duck.options == ("--iters", "20") and duck.label == "image duck_rgba.png"


@pytest.mark.parametrize("name,text,message", [
    ("p.txt", "# only a comment\n", "no prompts in it"),
    ("p.csv", "caption\nx\n", "needs a header with a 'prompt'"),
    ("p.jsonl", "{\"prompt\": \"a\"}\nnot json\n", "p.jsonl:2: not JSON"),
    ("p.jsonl", "{\"prompt\": \"a\", \"colour\": 1}\n", "unknown field(s) colour"),
    ("p.csv", "prompt,seed\na,seven\n", "p.csv:2: seed must be an integer"),
    ("p.jsonl", "{\"seed\": 1}\n", "needs a prompt or an image"),
])
def test_bad_prompt_files_name_the_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_batch(path)
    with pytest.raises(UserError, match="prompt file not found"):
        read_batch(tmp_path / "missing.txt")


def test_slugs():
    assert slugify("  A cat, on a mat!! ") == "a-cat-on-a-mat"
    assert slugify("???") == "run" and len(slugify("x" * 200)) == 60
