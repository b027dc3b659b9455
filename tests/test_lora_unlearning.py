"""LoRA unlearning (text-mode.md §4): only the adapter trains, CURE's group rules hold on its
factors slice by slice (grouped-query Llama, GPT-2's fused c_attn), the references are the
student with its adapter disabled, and the adapter saves, loads back and merges. Tiny random
models, a few steps each; invariants only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tolerances import assert_close
from transformers import AutoModelForCausalLM

from cure_core.checkpoints.copies import merged_copy
from cure_core.errors import CureError
from cure_core.groups import GroupSettings, ModuleGroups
from cure_core.model.backends import ItemBackend
from cure_core.model.recommender import Recommender
from cure_core.model_source import ModelSource
from cure_core.modules import parameter_mask
from cure_core.prompts import ItemModeEncoder, ItemVocab
from cure_core.requests import user_request
from cure_core.unlearning import lora
from cure_core.unlearning.methods import METHODS, UnlearnConfig
from cure_core.unlearning.runner import UnlearnRun, unlearn
from cure_core.workspace import Workspace
from tests.tiny_recipes import TINY_RECIPE

QUICK = {"steps": 2, "batch_size": 4, "probe_size": 8, "probe_every": 2}
# Llama: 4 query heads read 2 key/value heads (h0, h1 -> kv0; h2, h3 -> kv1); GPT-2: 4 heads
GROUPS = {
    "llama": {
        "forget-specific": ["a0.h1", "a0.kv0", "a1.h2"],
        "retain-specific": ["a0.h3", "m0", "a1.kv1"],
        "task-shared": ["m1", "a1.h0"],
        "outside": ["a0.h0", "a0.h2", "a0.kv1", "a1.h1", "a1.h3", "a1.kv0"],
    },
    "gpt2": {
        "forget-specific": ["a0.h1", "a1.h2"],
        "retain-specific": ["a0.h3", "m0"],
        "task-shared": ["m1", "a1.h0"],
        "outside": ["a0.h0", "a0.h2", "a1.h1", "a1.h3"],
    },
}


def _groups(by_group: dict[str, list[str]]) -> ModuleGroups:
    kinds = {"a": "head", "m": "mlp", "u": "user row"}
    rows = [
        {"module": m, "kind": "kv head" if ".kv" in m else kinds[m[0]], "group": g}
        for g, members in by_group.items()
        for m in members
    ]
    return ModuleGroups(table=pd.DataFrame(rows), separability={}, settings=GroupSettings(), warnings=[])


@pytest.fixture(scope="module")
def text(user_checkpoints, synthetic):
    """``{arch: (workspace, original, request, sets)}``: the tiny llama (GQA) and gpt2 checkpoints."""
    out = {}
    for arch in ("llama", "gpt2"):
        folder, adapter = user_checkpoints[arch]
        ws = Workspace.open(
            dataset=synthetic,
            source=ModelSource(model=str(folder), adapter=str(adapter), profile="compact", device="cpu"),
        )
        request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=0)
        out[arch] = (ws, ws.models.original(), request, ws.data.sets(request))
    return out


@pytest.fixture(scope="module")
def item(synthetic):
    """An untrained tiny item-token recommender (the invariants need no training), its request and sets."""
    ws = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE)
    samples = ws.data.samples
    request = user_request(ws.data.dataset, samples, fraction=0.05, seed=0)
    sets = ws.data.sets(request)
    vocab = ItemVocab.for_samples(samples)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(TINY_RECIPE.hf_config(len(vocab), 2 * samples.config.history_len + 3))
    known = np.setdiff1d(np.unique(samples.user), sets.forget_users)
    return (
        ws,
        Recommender(
            model=model.eval(), encoder=ItemModeEncoder(vocab, samples), known_users=known, backend=ItemBackend()
        ),
        request,
        sets,
    )


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _base_weights(peft_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The wrapped model's own parameters under the plain model's names (no adapter)."""
    return {
        n.replace(".base_layer", ""): p for n, p in peft_model.get_base_model().named_parameters() if "lora_" not in n
    }


def _split(flat: torch.Tensor, params: list[torch.nn.Parameter]) -> dict[int, torch.Tensor]:
    """A flat mask over ``params`` as ``{id(param): mask shaped like it}``."""
    return {id(p): part.view_as(p) for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True)}


def test_default_targets_cover_every_projection_and_unknown_ones_are_refused(text):
    llama, gpt2 = text["llama"][1].model, text["gpt2"][1].model
    assert lora.default_targets(gpt2) == ["c_attn", "c_proj", "c_fc"]
    assert lora.default_targets(llama) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert lora.resolve_targets(llama, ("v_proj", "q_proj", "v_proj")) == ["v_proj", "q_proj"]
    with pytest.raises(CureError, match=r"c_attn are not projections of this llama model.*fix: use some of q_proj"):
        lora.resolve_targets(llama, ("c_attn",))
    peft_model = lora.wrap(llama, UnlearnConfig(method="ga", lora=True, lora_targets=("v_proj",)))
    assert sorted(lora.lora_layers(peft_model)) == [f"model.layers.{i}.self_attn.v_proj" for i in range(2)]
    wrapped = lora.lora_layers(lora.wrap(gpt2, UnlearnConfig(method="ga", lora=True, lora_rank=2)))
    assert sorted(wrapped) == sorted(
        f"transformer.h.{i}.{m}" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    )
    layer = wrapped["transformer.h.0.attn.c_attn"]
    assert layer.fan_in_fan_out and layer.lora_A["default"].weight.shape == (2, 64)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)


@pytest.mark.parametrize("retain_rule", ["retain_update", "frozen"])
def test_group_rules_map_slices_to_rows_of_b_columns_of_a_or_whole_factors(text, retain_rule):
    """Llama with GQA, layer 0: q rows per head and k/v rows per key/value head live in lora_B
    (lora_A task-shared); o_proj columns per head in lora_A (lora_B task-shared), the columns of
    no updated head zeroed; the MLP whole."""
    original = text["llama"][1]
    config = UnlearnConfig(method="cure", lora=True, retain_rule=retain_rule)
    peft_model = lora.wrap(original.model, config)
    masks, sizes = lora.group_rules(peft_model, original.model, _groups(GROUPS["llama"]), config)
    assert sizes == {"forget-specific": 3, "retain-specific": 3, "task-shared": 2}
    params = lora.trainable(peft_model)
    split = {key: _split(getattr(masks, key), params) for key in ("forget", "retain", "shared")}
    layers = lora.lora_layers(peft_model)

    def factors(layer: str, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        lay = layers[f"model.layers.0.{layer}"]
        return split[key][id(lay.lora_A["default"].weight)], split[key][id(lay.lora_B["default"].weight)]

    d = 16
    a, b = factors("self_attn.q_proj", "forget")
    assert not a.any() and b[d : 2 * d].all() and b.sum() == d * 8  # head 1's rows
    a, b = factors("self_attn.q_proj", "shared")
    assert a.all() and not b.any()
    a, b = factors("self_attn.k_proj", "forget")
    assert b[:d].all() and b.sum() == d * 8  # key/value head 0's rows
    a, b = factors("self_attn.o_proj", "forget")
    assert a[:, d : 2 * d].all() and a.sum() == d * 8 and not b.any()  # head 1's input columns
    a, b = factors("self_attn.o_proj", "shared")
    assert b.all() and not a.any()
    for proj in ("gate_proj", "up_proj", "down_proj"):
        a, b = factors(f"mlp.{proj}", "retain")
        assert a.all() and b.all()
    o_a = layers["model.layers.0.self_attn.o_proj"].lora_A["default"].weight
    zeroed = [h for h in range(4) if not o_a[:, h * d : (h + 1) * d].any()]
    assert zeroed == ([0, 2] if retain_rule == "retain_update" else [0, 2, 3])  # outside, and frozen retain
    assert not (masks.forget & masks.retain).any() and not (masks.forget & masks.shared).any()


@pytest.mark.parametrize(("arch", "retain_rule"), [("llama", "retain_update"), ("gpt2", "frozen")])
def test_cure_on_lora_changes_exactly_the_updated_groups_slices(text, arch, retain_rule):
    """ΔW = (merged weight − base weight) is exactly zero outside the slices of forget-specific,
    task-shared and (with retain_update) retain-specific modules, and nonzero in each of them."""
    ws, original, request, sets = text[arch]
    by_group = GROUPS[arch]
    config = UnlearnConfig(method="cure", strength=1e-2, lora=True, retain_rule=retain_rule, **QUICK)
    before = _snapshot(original.model)
    result = unlearn(original, ws.data.samples, sets, request, config, _groups(by_group))
    assert result.model.checkpoint is not None and result.model.checkpoint.model is result.model.model.get_base_model()
    merged = dict(merged_copy(result.model.model).named_parameters())
    updated = ["forget-specific", "task-shared"] + (["retain-specific"] if retain_rule == "retain_update" else [])
    allowed = parameter_mask(original.model, [m for g in updated for m in by_group[g]])
    for name, weight in before.items():
        assert torch.equal(merged[name][~allowed[name]], weight[~allowed[name]]), f"{name} changed outside"
    for group in updated:
        owned = parameter_mask(original.model, by_group[group])
        assert any(not torch.equal(merged[n][m], before[n][m]) for n, m in owned.items() if m.any()), group
    assert all(torch.equal(original.model.get_parameter(n), w) for n, w in before.items())
    assert 0 < result.params_updated < result.params_total == result.trainable_params


def test_references_are_the_student_with_its_adapter_disabled(text, monkeypatch):
    """π_ref, the retain KL and the teacher (E2URec-style: all three read) come from the student
    with its adapter off, equal to the original's logits before and after steps."""
    ws, original, request, sets = text["llama"]
    config = UnlearnConfig(method="e2urec", strength=1e-2, lora=True, **QUICK)
    run = UnlearnRun(original, ws.data.samples, sets, request, config)
    batch = original.encode(ws.data.samples, sets.forget[:6])
    with torch.no_grad():
        expected = original.last_logits(batch)

    def reference_logits() -> torch.Tensor:
        with torch.no_grad(), run.student.model.disable_adapter():
            return run.student.last_logits(batch)

    assert_close(reference_logits(), expected)
    monkeypatch.setattr(original, "last_logits", lambda *_: pytest.fail("a LoRA run read the original"))
    for step in (1, 2):
        run.step(step)
    monkeypatch.undo()
    assert_close(reference_logits(), expected)
    with torch.no_grad():
        assert not torch.allclose(run.student.last_logits(batch), expected, atol=1e-4), "the adapter must act"


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_only_the_adapter_and_leaves_the_original(item, method):
    ws, original, request, sets = item
    row = f"u:{request.users[0]}"  # an embedding row: no LoRA target, so left as it is
    groups = _groups({"forget-specific": ["a0.h1", row], "task-shared": ["m1"], "outside": ["a1.h0"]})
    before = _snapshot(original.model)
    config = UnlearnConfig(method=method, strength=1e-2, lora=True, **{**QUICK, "batch_size": 16})
    result = unlearn(original, ws.data.samples, sets, request, config, groups if METHODS[method].needs_groups else None)
    assert all(torch.equal(p, before[n]) for n, p in original.model.named_parameters()), "the original changed"
    base = _base_weights(result.model.model)
    assert base.keys() == before.keys() and all(torch.equal(base[n], w) for n, w in before.items())
    n_lora = sum(p.numel() for n, p in result.model.model.named_parameters() if "lora_" in n)
    assert result.mode == "lora" and result.params_total == result.trainable_params == n_lora
    assert 0 < result.params_updated <= n_lora
    assert np.isfinite(result.history[-1]["forget_loss"]) and "forget_auc" in result.history[-1]
    if METHODS[method].needs_groups:
        # heads and MLPs only (the ablation makes the outside head shared too): LoRA cannot update the row
        assert sum(result.groups_used.values()) == (3 if method == "cure-nocircuit" else 2)


def test_row_reset_and_rows_alone_are_refused_with_lora(item):
    ws, original, request, sets = item
    groups = _groups({"forget-specific": ["a0.h1", f"u:{request.users[0]}"]})
    config = UnlearnConfig(method="cure", lora=True, row_rule="reset", **QUICK)
    with pytest.raises(CureError, match="embedding rows of the base model, which a LoRA run never changes"):
        unlearn(original, ws.data.samples, sets, request, config, groups)
    only_rows = _groups({"forget-specific": [f"u:{request.users[0]}"]})
    config = UnlearnConfig(method="cure", lora=True, **QUICK)
    with pytest.raises(CureError, match=r"nothing for the forget update.*embedding rows are no LoRA target"):
        unlearn(original, ws.data.samples, sets, request, config, only_rows)


def test_full_mode_reports_every_parameter_as_trainable(item):
    ws, original, request, sets = item
    result = unlearn(original, ws.data.samples, sets, request, UnlearnConfig(method="ga", **{**QUICK, "steps": 1}))
    n_params = sum(p.numel() for p in original.model.parameters())
    assert result.mode == "full" and result.trainable_params == result.params_total == n_params


def test_the_saved_adapter_loads_back_and_the_merged_copy_and_bridge_match(text, tmp_path):
    from peft import PeftModel

    ws, original, request, sets = text["gpt2"]  # Conv1D: the fan_in_fan_out path
    result = unlearn(
        original, ws.data.samples, sets, request, UnlearnConfig(method="npo", strength=1e-2, lora=True, **QUICK)
    )
    peft_model = result.model.model
    folder = lora.save_adapter(peft_model, tmp_path / "adapter")
    assert {"adapter_model.safetensors", "adapter_config.json"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*.bin"))
    batch = original.encode(ws.data.samples, sets.forget[:6])
    with torch.no_grad():
        expected = result.model.last_logits(batch)
        loaded = lora.load_saved(original.model, folder)
        reloaded = Recommender(
            model=loaded, encoder=original.encoder, known_users=None, backend=original.backend
        ).last_logits(batch)
        merged = merged_copy(peft_model)
        merged_logits = Recommender(
            model=merged, encoder=original.encoder, known_users=None, backend=original.backend
        ).last_logits(batch)
        again = result.model.last_logits(batch)
    assert torch.equal(reloaded, expected)
    assert_close(merged_logits, expected)
    assert isinstance(peft_model, PeftModel) and torch.equal(again, expected), "merging must not touch the run's model"
    assert not hasattr(merged, "peft_config") and not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():  # the bridge runs a merged copy: GPT-2's in-place bridge would drop the c_attn adapter
        bridged = result.model.bridge()(batch.input_ids, return_type="logits", attention_mask=batch.attention_mask)
        torch.testing.assert_close(bridged[:, -1], expected, atol=1e-4, rtol=0)
        assert torch.equal(result.model.last_logits(batch), expected), "booting the bridge must not change the model"


def test_lora_on_a_bridged_checkpoint_wraps_the_plain_modules(user_checkpoints, synthetic):
    """Attribution boots a TransformerLens bridge on a user's model in place (GPT-2's attention
    then reads split q/k/v copies); the LoRA student is the plain model underneath."""
    folder, adapter = user_checkpoints["gpt2"]
    ws = Workspace.open(dataset=synthetic, source=ModelSource(model=str(folder), adapter=str(adapter), device="cpu"))
    original = ws.models.original()
    request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=0)
    sets = ws.data.sets(request)
    plain_names = [n for n, _ in original.model.named_parameters()]
    original.bridge()
    assert any("_original_component" in n for n, _ in original.model.named_parameters())
    config = UnlearnConfig(method="cure", strength=1e-2, lora=True, **QUICK)
    run = UnlearnRun(original, ws.data.samples, sets, request, config, _groups(GROUPS["gpt2"]))
    assert list(_base_weights(run.student.model)) == plain_names
    run.step(1)
    batch = original.encode(ws.data.samples, sets.forget[:4])
    with torch.no_grad(), run.student.model.disable_adapter():
        assert_close(run.student.last_logits(batch), original.last_logits(batch))
