"""Same-length corruptions of text-mode prompts: every pair has equal token length, differs only
inside the swapped titles, is seeded; unmatched pairs are dropped, bounded and reported; item
mode is unchanged; EAP runs on the pairs of user checkpoints (tiny Qwen2 + TALLRec, GPT-2 +
compact)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.attribution import attribute
from analysis.prompts import PromptBatch
from cure_core.ablation import ablation_table
from cure_core.checkpoints import boot_bridge, load_checkpoint
from cure_core.circuits import AttributionSettings, CircuitContext, answer_metric, get_attribution, prompt_batches
from cure_core.corruptions import corrupt
from cure_core.data import RatingsDataset, Samples, build_samples
from cure_core.errors import CureError
from cure_core.model.backends import ItemBackend, TextBackend
from cure_core.model.example_checkpoint import tokenizer_corpus, train_tokenizer, write_example
from cure_core.model.recommender import Recommender
from cure_core.profiles import ProfileEncoder, load_profile
from cure_core.prompts import ItemModeEncoder, ItemVocab
from cure_core.requests import item_request, request_sets
from cure_core.text_corruptions import MAX_DRAWS, text_pairs

WORDS = ["Red", "Night", "River", "Ghost", "Summer", "Iron", "Blue", "Storm", "Glass", "Moon", "Silent", "Wolf", "Sky"]
LONG = "The Extraordinarily Long Unmatched Title Nobody Else Shares Anywhere At All"


@pytest.fixture(scope="module")
def varied(synthetic) -> RatingsDataset:
    """The synthetic ratings with titles of one to four words (some with an apostrophe), one
    title far longer than every other, and a user file (for E2URec)."""
    items = synthetic.items.copy()
    titles = [" ".join(WORDS[(5 * i + 7 * k) % len(WORDS)] for k in range(1 + i % 4)) for i in range(len(items))]
    assert len(set(titles)) == len(titles)
    titles = [t.replace(" ", "'s ", 1) if i % 5 == 0 else t for i, t in enumerate(titles)]
    titles[7] = LONG
    items["title"] = titles
    user_ids = sorted(synthetic.ratings["user"].unique(), key=int)
    users = pd.DataFrame(
        {
            "user": user_ids,
            "age": [str(20 + int(u) % 40) for u in user_ids],
            "gender": ["F" if int(u) % 2 else "M" for u in user_ids],
            "occupation": ["technician" if int(u) % 3 else "writer" for u in user_ids],
        }
    )
    return RatingsDataset(name="varied", ratings=synthetic.ratings, items=items, users=users)


@pytest.fixture(scope="module")
def varied_samples(varied) -> Samples:
    return build_samples(varied)


@pytest.fixture(scope="module")
def tokenizer(varied):
    return train_tokenizer(tokenizer_corpus(varied))


@pytest.fixture(scope="module")
def request_(varied, varied_samples):
    """An item request on two items, so target swaps must avoid them."""
    return item_request(varied, varied_samples, item_ids=varied_samples.item_ids[:2], scope="target")


def _encoder(profile: str, tokenizer, varied, varied_samples) -> ProfileEncoder:
    return ProfileEncoder(load_profile(profile), tokenizer, varied, varied_samples)


def _train_idx(samples: Samples, n: int = 120) -> np.ndarray:
    return samples.index(Samples.TRAIN)[:: max(1, len(samples.index(Samples.TRAIN)) // n)][:n]


def _rewritten(text: str, spans, items: dict[int, str]) -> str:
    """``text`` with the span of every slot in ``items`` replaced by that slot's new text."""
    for slot, start, end in sorted(spans, key=lambda s: -s[1]):
        if slot in items:
            text = text[:start] + items[slot] + text[end:]
    return text


@pytest.mark.parametrize("profile", ["tallrec", "compact", "e2urec"])
@pytest.mark.parametrize("name", ["history", "target"])
def test_pairs_have_equal_length_and_differ_only_inside_the_swapped_titles(
    profile, name, tokenizer, varied, varied_samples, request_
):
    samples, encoder = varied_samples, _encoder(profile, tokenizer, varied, varied_samples)
    idx = _train_idx(samples)
    pairs = text_pairs(encoder, name, samples, idx, None, request_, np.random.default_rng(0))
    assert len(pairs.kept) + pairs.dropped == len(idx) and len(pairs.kept) > 0
    forbidden = set(samples.item_codes(request_.items))
    for j, clean_ids, corrupt_ids, before, after in zip(
        pairs.kept, pairs.clean, pairs.corrupt, pairs.clean_slots, pairs.corrupt_slots, strict=True
    ):
        i = int(idx[j])
        assert len(clean_ids) == len(corrupt_ids)
        prompt = encoder.prompt(samples, i)
        assert clean_ids == tokenizer.encode(prompt, add_special_tokens=encoder.profile.add_special_tokens)
        # the spans are where each slot's item is written
        written = encoder.written(before)
        assert written.text == prompt
        assert all(prompt[a:b] == encoder.item_text[before.items[slot]] for slot, a, b in written.spans)
        # what changed: which items, never the likes, stars, user or (for history) the target
        assert (after.likes, after.stars, after.user, after.user_known) == (
            before.likes,
            before.stars,
            before.user,
            before.user_known,
        )
        changed = {s for s in range(len(before.items)) if before.items[s] != after.items[s]}
        if name == "history":
            assert changed == {s for s, _, _ in written.spans if s < before.target_slot}
            assert not set(after.history) & set(before.items) and len(set(after.history)) == len(after.history)
        else:
            assert changed == {before.target_slot} and after.target not in forbidden
        # the corrupted prompt is the clean one with exactly the swapped titles rewritten
        new_text = {s: encoder.item_text[after.items[s]] for s in changed}
        decoded = tokenizer.decode(corrupt_ids, clean_up_tokenization_spaces=False)
        assert decoded == _rewritten(prompt, written.spans, new_text)
        # and the tokens that differ all lie inside the clean titles' character spans
        offsets = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
        titles = [(a, b) for s, a, b in written.spans if s in changed]
        for pos in np.flatnonzero(np.array(clean_ids) != np.array(corrupt_ids)):
            x, y = offsets[pos]
            assert any(x < b and y > a for a, b in titles)


def test_corruption_is_seeded(tokenizer, varied, varied_samples, request_):
    encoder = _encoder("tallrec", tokenizer, varied, varied_samples)
    idx = _train_idx(varied_samples, 40)
    for name in ("history", "target"):
        first, again = (
            text_pairs(encoder, name, varied_samples, idx, None, request_, np.random.default_rng(3)) for _ in range(2)
        )
        assert first.corrupt == again.corrupt and np.array_equal(first.kept, again.kept)
        assert first.corrupt_slots == again.corrupt_slots


def test_unmatchable_pairs_are_dropped_counted_and_warned(tokenizer, varied, varied_samples, request_):
    """The long title has no same-length partner: every sample with it as target is dropped."""
    samples = varied_samples
    rec = Recommender(
        model=None, encoder=_encoder("compact", tokenizer, varied, samples), known_users=None, backend=TextBackend()
    )
    idx = _train_idx(samples)
    long_item = samples.item_codes([varied.items["item"][7]])[0]
    unmatchable = idx[samples.target[idx] == long_item]
    assert len(unmatchable) > 0
    settings = AttributionSettings(corruption="target", batch_size=16)
    with pytest.warns(UserWarning, match=r"(\d+) of 120 prompt\(s\) had no same-length"):
        batches = prompt_batches(rec, samples, idx, request_, settings)
    assert batches.dropped == len(idx) - len(batches.idx) >= len(unmatchable)
    assert not set(unmatchable) & set(batches.idx) and set(batches.idx) <= set(idx)
    assert sum(len(b) for b in batches) == len(batches.idx)
    weight = torch.cat([b.weight for b in batches])
    assert torch.equal(weight, torch.from_numpy(2.0 * samples.label[batches.idx] - 1).float())
    with pytest.raises(CureError, match=r"none of the .* same token length"):
        prompt_batches(rec, samples, unmatchable, request_, settings)


def test_redraws_are_bounded(tokenizer, varied, varied_samples, request_, monkeypatch):
    """With a length estimate that lets every item through, the full-prompt check rejects the
    wrong lengths: each pair is drawn at most MAX_DRAWS times, and only equal lengths are kept."""
    encoder = _encoder("tallrec", tokenizer, varied, varied_samples)
    monkeypatch.setattr(encoder, "item_lengths", lambda left, right: np.zeros(len(encoder.item_text), int))
    calls = []
    real = encoder.written
    monkeypatch.setattr(encoder, "written", lambda slots: calls.append(slots) or real(slots))
    idx = _train_idx(varied_samples, 30)
    pairs = text_pairs(encoder, "history", varied_samples, idx, None, request_, np.random.default_rng(0))
    assert len(calls) <= len(idx) * (1 + MAX_DRAWS)
    assert pairs.dropped > 0 and all(len(a) == len(b) for a, b in zip(pairs.clean, pairs.corrupt, strict=True))


def test_user_corruption_writes_the_unknown_user(tokenizer, varied, varied_samples, request_):
    samples, encoder = varied_samples, _encoder("compact", tokenizer, varied, varied_samples)
    idx = _train_idx(samples)
    pairs = text_pairs(encoder, "user", samples, idx, None, request_, np.random.default_rng(0))
    lengths_equal = [
        len(a) == len(b)
        for a, b in zip(
            encoder.token_ids([encoder.prompt(samples, int(i), True) for i in idx]),
            encoder.token_ids([encoder.prompt(samples, int(i), False) for i in idx]),
            strict=True,
        )
    ]
    assert np.array_equal(pairs.kept, np.flatnonzero(lengths_equal))
    for j, corrupt_ids in zip(pairs.kept, pairs.corrupt, strict=True):
        decoded = tokenizer.decode(corrupt_ids, clean_up_tokenization_spaces=False)
        assert decoded == encoder.prompt(samples, int(idx[j]), False)
    for profile in ("tallrec", "e2urec"):
        with pytest.raises(CureError, match=r"writes no user.*use history or target"):
            text_pairs(
                _encoder(profile, tokenizer, varied, samples),
                "user",
                samples,
                idx,
                None,
                request_,
                np.random.default_rng(0),
            )


def _old_item_batches(rec, samples, idx, request, settings) -> list[PromptBatch]:
    """``prompt_batches`` of item mode as it was before text corruptions (the reference)."""
    rng = np.random.default_rng(settings.seed + 1)
    known = rec.user_known(samples, idx)
    clean = rec.encode(samples, idx)
    bad = corrupt(settings.corruption, samples, idx, known, request, rng)
    corrupted = rec.encoder.encode(
        bad.samples, np.arange(len(idx)), bad.user_known if bad.user_known is not None else known
    )
    weight = (
        torch.ones(len(idx)) if settings.metric == "margin" else torch.from_numpy(2.0 * samples.label[idx] - 1).float()
    )
    size = settings.batch_size
    return [
        PromptBatch(clean.input_ids[i : i + size], corrupted.input_ids[i : i + size], weight[i : i + size])
        for i in range(0, len(idx), size)
    ]


@pytest.mark.parametrize("name", ["history", "target", "user"])
@pytest.mark.parametrize("metric", ["signed", "margin"])
def test_item_mode_batches_are_unchanged(name, metric, synthetic, synthetic_samples):
    samples = synthetic_samples
    encoder = ItemModeEncoder(ItemVocab.for_samples(samples), samples)
    rec = Recommender(
        model=None, encoder=encoder, known_users=np.arange(0, len(samples.user_ids), 2), backend=ItemBackend()
    )
    request = item_request(synthetic, samples, item_ids=samples.item_ids[:3], scope="target")
    idx = _train_idx(samples, 70)
    settings = AttributionSettings(corruption=name, metric=metric, batch_size=16, seed=4)
    batches = prompt_batches(rec, samples, idx, request, settings)
    reference = _old_item_batches(rec, samples, idx, request, settings)
    assert batches.dropped == 0 and np.array_equal(batches.idx, idx) and len(batches) == len(reference)
    for got, want in zip(batches, reference, strict=True):
        assert got.attention_mask is None and want.attention_mask is None
        assert torch.equal(got.clean, want.clean) and torch.equal(got.corrupt, want.corrupt)
        assert torch.equal(got.weight, want.weight)


@pytest.mark.parametrize(("arch", "profile"), [("qwen2", "tallrec"), ("gpt2", "compact")])
def test_eap_runs_on_text_pairs_of_a_user_checkpoint(arch, profile, varied, varied_samples, request_, tmp_path):
    write_example(arch, tmp_path / arch, varied)
    loaded = load_checkpoint(tmp_path / arch, device="cpu")
    encoder = ProfileEncoder(load_profile(profile), loaded.tokenizer, varied, varied_samples)
    rec = Recommender(model=loaded.model, encoder=encoder, known_users=None, backend=TextBackend())
    ctx = CircuitContext(rec, boot_bridge(loaded), varied_samples, request_, request_sets(request_, varied_samples))
    settings = AttributionSettings(method="eap-ig", steps=2, corruption="target", n_prompts=12, n_eval=6, batch_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a few prompts may be dropped (the long title)
        batches = ctx.batches("retain", settings, "attribution")
        result = get_attribution(ctx, "retain", settings, quiet=True)
    assert any(b.attention_mask is not None for b in batches)  # prompts of different lengths, left padded
    assert result.settings["dropped_pairs"] == batches.dropped
    assert result.n_prompts == len(batches.idx) == 12 - batches.dropped
    assert np.isfinite(result.scores).all() and np.abs(result.scores).sum() > 0
    # the engine's own call on the same batches gives the same scores
    again = attribute(ctx.bridge, batches, answer_metric(rec), "eap-ig", 2)
    np.testing.assert_allclose(again.scores, result.scores, rtol=1e-5, atol=1e-7)
    # ablation reads the labels of the prompts it keeps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = ablation_table(ctx, ["m0"], "zero", "target", n_probe=8)
    assert (table["prompts"] <= 8).all() and np.isfinite(table["mean margin ablated"]).all()


def test_a_profile_that_rewrites_titles_is_a_clear_error(tmp_path, tokenizer, varied, varied_samples, request_):
    path = tmp_path / "cut.toml"
    path.write_text(
        "template = '{{ history | join(\", \") }} -> {{ target }}?'\n[item]\ntemplate = '{{ name }}'\n"
        "[history]\nentry = '{{ item[:6] }}'\n[answer]\nyes = ' Yes'\nno = ' No'\n"
    )
    encoder = ProfileEncoder(load_profile(path), tokenizer, varied, varied_samples)
    with pytest.raises(CureError, match=r"changes the item text.*cannot be located"):
        text_pairs(
            encoder, "target", varied_samples, _train_idx(varied_samples, 4), None, request_, np.random.default_rng(0)
        )
