"""Prompt profiles: shipped prompts reproduced exactly, answer ids read in context, left-padded
encoding, and one CureError per bad profile file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cure_core.data import RatingsDataset, SplitConfig, build_samples
from cure_core.errors import CureError
from cure_core.model.example_checkpoint import tokenizer_corpus, train_tokenizer
from cure_core.profiles import SHIPPED_PROFILES, ProfileEncoder, answer_token_id, answer_token_ids, load_profile
from cure_core.prompts import ItemVocab

# The first record of TALLRec's data/movie/test.json (SAI990323/TALLRec), as stored there.
TALLREC_RECORD = json.loads(
    r"""{
    "instruction": "Given the user's preference and unpreference, identify whether the user will like """
    r"""the target movie by answering \"Yes.\" or \"No.\".",
    "input": "User Preference: \"Paris, Texas (1984)\", \"Rebel Without a Cause (1955)\", \"Return of """
    r"""the Pink Panther, The (1974)\", \"Ace Ventura: Pet Detective (1994)\", \"Magnificent Seven, The """
    r"""(1954)\", \"Star Trek: The Wrath of Khan (1982)\", \"Cat People (1982)\", \"Orlando (1993)\", \"Dave """
    r"""(1993)\"\nUser Unpreference: \"Kalifornia (1993)\"\nWhether the user will like the target movie """
    r"""\"Perez Family, The (1995)\"?",
    "output": "No."
}"""
)
# TALLRec's generate_prompt (finetune_rec.py, evaluate.py): the Alpaca wrapper, with the
# "noqa: E501" lint marker that sits inside its f-string and so inside every prompt.
ALPACA = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.  # noqa: E501\n\n### Instruction:\n"
    "{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
# One user's ratings in time order: the history and target of that record.
TALLREC_USER = (
    "Paris, Texas (1984) 5; Rebel Without a Cause (1955) 4; Kalifornia (1993) 2; "
    "Return of the Pink Panther, The (1974) 4; Ace Ventura: Pet Detective (1994) 5; Magnificent Seven, The (1954) 4; "
    "Star Trek: The Wrath of Khan (1982) 5; Cat People (1982) 4; Orlando (1993) 4; Dave (1993) 5; "
    "Perez Family, The (1995) 2; Jurassic Park (1993) 4; Sleeper (1973) 4"
)


def _one_user_dataset(rated: str, users: pd.DataFrame | None = None) -> RatingsDataset:
    """User 7 rating movies in the order written, as ``Title (year) stars`` separated by ``; ``."""
    movies = [entry.rsplit(" ", 1) for entry in rated.split("; ")]
    titles, years = zip(*(movie[:-1].rsplit(" (", 1) for movie, _ in movies), strict=True)
    items = pd.DataFrame(
        {"item": [str(i + 1) for i in range(len(movies))], "title": titles, "year": years, "genres": "Drama"}
    )
    ratings = pd.DataFrame(
        {
            "user": "7",
            "item": items["item"],
            "rating": [float(stars) for _, stars in movies],
            "timestamp": np.arange(len(movies)) + 1000,
        }
    )
    return RatingsDataset(name="one-user", ratings=ratings, items=items, users=users)


@pytest.fixture(scope="module")
def tokenizer(synthetic):
    return train_tokenizer(tokenizer_corpus(synthetic))


def test_shipped_profiles_load():
    for name in SHIPPED_PROFILES:
        profile = load_profile(name)
        assert profile.name == name and profile.yes != profile.no
    assert load_profile("e2urec").user_fields == ("gender", "age", "occupation")
    assert load_profile("tallrec").user_fields == ()


def test_tallrec_prompt_is_byte_for_byte(tokenizer):
    dataset = _one_user_dataset(TALLREC_USER)
    samples = build_samples(dataset, SplitConfig(holdout_user_frac=0))
    encoder = ProfileEncoder(load_profile("tallrec"), tokenizer, dataset, samples)
    assert samples.label[0] == 0 and TALLREC_RECORD["output"] == "No."
    assert encoder.prompt(samples, 0) == ALPACA.format(**TALLREC_RECORD)


def test_e2urec_prompt(tokenizer):
    rated = "Heat (1995) 1; Fargo (1996) 4; Schindler's List (1993) 5; Babe (1995) 3; Ran (1985) 2; Big (1988) 4"
    users = pd.DataFrame(
        {"user": ["7"], "age": ["24"], "gender": ["F"], "occupation": ["technician"], "zip": ["85711"]}
    )
    dataset = _one_user_dataset(rated, users)
    samples = build_samples(dataset, SplitConfig(history_len=3, holdout_user_frac=0))
    prompt = ProfileEncoder(load_profile("e2urec"), tokenizer, dataset, samples).prompt(samples, 0)
    assert prompt == (
        "The user is a female. Her job is technician. Her age is 24.\n"
        "She watched the following movies in order in the past, and rated them:\n"
        "['0. Heat (1995) (1 star)', '1. Fargo (1996) (4 stars)', \"2. Schindler's List (1993) (5 stars)\"]\n"
        "Based on the movies she has watched, deduce if she will like the movie ***Babe (1995)***.\n"
        "Note that more stars the user rated the movie, the user liked the movie more.\n"
        "You should ONLY tell me yes or no.\n"
    )


def test_e2urec_needs_user_fields(tokenizer, synthetic, synthetic_samples):
    with pytest.raises(CureError, match=r"gender, age, occupation.*does not have"):
        ProfileEncoder(load_profile("e2urec"), tokenizer, synthetic, synthetic_samples)


def test_compact_prompt_is_one_line(tokenizer, synthetic, synthetic_samples):
    encoder = ProfileEncoder(load_profile("compact"), tokenizer, synthetic, synthetic_samples)
    s, titles = synthetic_samples, synthetic.titles()
    history = "; ".join(
        f"{titles[s.item_ids[item]]}: {'liked' if like else 'disliked'}"
        for item, like in zip(s.history[0], s.history_likes[0], strict=True)
    )
    tail = f" rated: {history}. Will the user like {titles[s.item_ids[s.target[0]]]}? Answer:"
    assert encoder.prompt(s, 0, True) == f"User {s.user_ids[s.user[0]]}" + tail
    assert encoder.prompt(s, 0, False) == "A new user" + tail


def test_answer_ids_are_read_in_context(tokenizer, synthetic, synthetic_samples):
    tallrec = ProfileEncoder(load_profile("tallrec"), tokenizer, synthetic, synthetic_samples)
    compact = ProfileEncoder(load_profile("compact"), tokenizer, synthetic, synthetic_samples)
    # after "Response:\n" the answer is "Yes" with no leading space; after "Answer:" it is " Yes"
    assert tokenizer.convert_ids_to_tokens([tallrec.yes_id, tallrec.no_id]) == ["Yes", "No"]
    assert tokenizer.convert_ids_to_tokens([compact.yes_id, compact.no_id]) == ["ĠYes", "ĠNo"]
    # a prompt ending in a space: the space joins the answer's first token
    assert tokenizer.convert_ids_to_tokens(answer_token_id(tokenizer, "Answer: ", "Yes")) == "ĠYes"
    for encoder in (tallrec, compact):
        prompt = encoder.prompt(synthetic_samples, 3)
        for word, token in ((encoder.profile.yes, encoder.yes_id), (encoder.profile.no, encoder.no_id)):
            base = tokenizer.encode(prompt, add_special_tokens=encoder.profile.add_special_tokens)
            assert (
                tokenizer.encode(prompt + word, add_special_tokens=encoder.profile.add_special_tokens)[len(base)]
                == token
            )


def test_answer_errors(tokenizer, synthetic_samples):
    with pytest.raises(CureError, match=r"begin with the same token"):
        answer_token_ids(tokenizer, "Answer:", " Yes", " Yes!")
    word_level = ItemVocab.for_samples(synthetic_samples).to_hf_tokenizer()  # item-mode vocabulary: no words
    with pytest.raises(CureError, match=r"cannot write the answer"):
        answer_token_ids(word_level, "<ask>", "Yes", "No")


def test_encode_left_pads(tokenizer, synthetic, synthetic_samples):
    encoder = ProfileEncoder(load_profile("tallrec"), tokenizer, synthetic, synthetic_samples)
    idx = np.array([0, 7, 40, 41])
    batch = encoder.encode(synthetic_samples, idx, np.array([True, False, True, True]))
    assert batch.input_ids.shape == batch.attention_mask.shape and bool(batch.attention_mask[:, -1].all())
    for row, i in enumerate(idx):
        ids = tokenizer.encode(encoder.prompt(synthetic_samples, int(i)))
        n = int(batch.attention_mask[row].sum())
        assert n == len(ids) and batch.input_ids[row, -n:].tolist() == ids
        assert (batch.attention_mask[row, :-n] == 0).all() and (batch.input_ids[row, :-n] == encoder.pad_id).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("template = 'x\n", "not valid TOML"),
        ("colour = 1\n", "unknown key"),
        (
            "template = '{{ target }}'\n[item]\ntemplate = '{{ name }}'\n[history]\nentry = '{{ item }}'\n",
            "lacks 'yes'",
        ),
        (
            "template = '{{ targte }}'\n[item]\ntemplate = '{{ name }}'\n[history]\nentry = '{{ item }}'\n"
            "[answer]\nyes = 'Yes'\nno = 'No'\n",
            "unknown variable.*targte",
        ),
        (
            "template = '{% if %}'\n[item]\ntemplate = '{{ name }}'\n[history]\nentry = '{{ item }}'\n"
            "[answer]\nyes = 'Yes'\nno = 'No'\n",
            "not a valid Jinja2",
        ),
        (
            "template = '{{ target }}'\n[item]\ntemplate = '{{ name }}'\n[history]\nentry = '{{ item }}'\n"
            "[answer]\nyes = 'Yes'\nno = 'Yes'\n",
            "two different",
        ),
        (
            "template = '{{ target }}'\nadd_special_tokens = 'yes'\n[item]\ntemplate = '{{ name }}'\n"
            "[history]\nentry = '{{ item }}'\n[answer]\nyes = 'Y'\nno = 'N'\n",
            "must be a bool",
        ),
        (
            "template = '{{ target }}'\nitem = 3\n[history]\nentry = '{{ item }}'\n[answer]\nyes = 'Y'\nno = 'N'\n",
            "is not a table",
        ),
    ],
)
def test_bad_profile_files(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(CureError, match=message):
        load_profile(path)


def test_unknown_profile_name():
    with pytest.raises(CureError, match=r"no prompt profile 'alpaca'.*tallrec"):
        load_profile("alpaca")


@pytest.mark.integration
def test_tallrec_prompt_on_movielens_matches_tallrec_data(tokenizer):
    """User 934's sample with target "Perez Family, The (1995)" is TALLRec's first test record."""
    from cure_core.data import load_dataset

    dataset = load_dataset()
    samples = build_samples(dataset)
    encoder = ProfileEncoder(load_profile("tallrec"), tokenizer, dataset, samples)
    target = samples.item_codes([next(i for i, t in dataset.titles().items() if t == "Perez Family, The (1995)")])[0]
    candidates = np.flatnonzero((samples.target == target) & (samples.user == samples.user_codes(["934"])[0]))
    assert [encoder.prompt(samples, int(i)) for i in candidates] == [ALPACA.format(**TALLREC_RECORD)]
