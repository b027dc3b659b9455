"""Users' own checkpoints: tiny random-weight GPT-2 / Llama / Qwen2 (GQA) folders with LoRA
adapters, written by the example maker, loaded offline; logits agree with PEFT and the bridge;
every bad input is one CureError; the given files are never written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tolerances import assert_close

from cure_core.checkpoints import boot_bridge, load_checkpoint, resolve_device
from cure_core.errors import CureError
from cure_core.model.example_checkpoint import ARCHITECTURES, main

ARCHS = list(ARCHITECTURES)


class Payload:
    """An object ``torch.load(weights_only=True)`` must refuse to rebuild."""


@pytest.fixture
def checkpoints(user_checkpoints):
    """``{arch: (model folder, adapter folder)}`` (the session's, see conftest)."""
    return user_checkpoints


def _digests(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _ids(vocab: int, n: int = 3, seq: int = 14) -> torch.Tensor:
    return torch.randint(2, vocab, (n, seq), generator=torch.Generator().manual_seed(0))


def _hf_logits(folder: Path, adapter: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference logits straight from transformers (+ PeftModel), without this project's loader."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        return ids, model.eval()(ids).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_loads_checkpoint_without_adapter(checkpoints, arch):
    folder, _ = checkpoints[arch]
    loaded = load_checkpoint(folder, device="cpu")
    info = loaded.info
    assert not loaded.model.training and info.adapter is None
    assert (info.dtype, info.device, info.n_layers, info.n_heads, info.d_model) == ("fp32", "cpu", 2, 4, 64)
    assert info.n_kv_heads == (4 if arch == "gpt2" else 2)  # Llama and Qwen2 examples use GQA
    assert info.n_params == sum(p.numel() for p in loaded.model.parameters())
    assert json.loads(json.dumps(info.to_dict()))["architecture"] == info.architecture
    ids, reference = _hf_logits(folder)
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, reference)


@pytest.mark.parametrize("arch", ARCHS)
def test_merged_adapter_equals_peft_model(checkpoints, arch):
    folder, adapter = checkpoints[arch]
    loaded = load_checkpoint(folder, adapter, device="cpu")
    assert loaded.info.adapter.r == 8 and loaded.info.adapter.base_model_name_or_path == str(folder)
    assert not any("lora" in name for name, _ in loaded.model.named_parameters())
    ids, reference = _hf_logits(folder, adapter)
    _, base = _hf_logits(folder)
    with torch.no_grad():
        merged = loaded.model(ids).logits
    assert_close(merged, reference)
    assert (merged - base).abs().max() > 1e-3  # the example adapter is not a no-op


@pytest.mark.parametrize("arch", ARCHS)
def test_bridge_logits_equal_hf_logits(checkpoints, arch):
    folder, adapter = checkpoints[arch]
    loaded = load_checkpoint(folder, adapter, device="cpu")
    ids = _ids(loaded.info.vocab_size)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # one left-padded row
    with torch.no_grad():
        plain = loaded.model(ids).logits
        padded = loaded.model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    bridge = boot_bridge(loaded)
    with torch.no_grad():
        torch.testing.assert_close(bridge(ids, return_type="logits"), plain, atol=1e-4, rtol=0)
        bridged = bridge(ids, return_type="logits", attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(bridged[real], padded[real], atol=1e-4, rtol=0)


def test_bf16_load_and_bridge(checkpoints):
    folder, adapter = checkpoints["qwen2"]
    loaded = load_checkpoint(folder, adapter, dtype="bf16", device="cpu")
    assert loaded.info.dtype == "bf16" and next(loaded.model.parameters()).dtype == torch.bfloat16
    ids = _ids(loaded.info.vocab_size)
    with torch.no_grad():
        hf = loaded.model(ids).logits.float()
        assert torch.isfinite(boot_bridge(loaded)(ids, return_type="logits")).all()
    assert torch.isfinite(hf).all()


def test_given_files_are_never_written(checkpoints):
    folder, adapter = checkpoints["llama"]
    before = _digests(folder, adapter)
    boot_bridge(load_checkpoint(folder, adapter, device="cpu"))
    assert _digests(folder, adapter) == before


def test_legacy_bin_adapter_is_read_as_tensors(checkpoints, tmp_path):
    folder, adapter = checkpoints["llama"]
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shutil.copy(adapter / "adapter_config.json", legacy)
    torch.save(load_file(adapter / "adapter_model.safetensors"), legacy / "adapter_model.bin")
    from_bin = load_checkpoint(folder, legacy, device="cpu")
    from_st = load_checkpoint(folder, adapter, device="cpu")
    assert from_bin.info.adapter.weights_file == "adapter_model.bin"
    for a, b in zip(from_bin.model.parameters(), from_st.model.parameters(), strict=True):
        assert torch.equal(a, b)


def _copy(src: Path, dst: Path, skip: str = "") -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(skip) if skip else None)
    return dst


def test_folder_errors(checkpoints, tmp_path):
    folder, _ = checkpoints["gpt2"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CureError, match=r"no config.json"):
        load_checkpoint(empty, device="cpu")
    torch.save({"w": torch.zeros(1)}, empty / "model.pt")
    with pytest.raises(CureError, match=r"pickled model"):
        load_checkpoint(empty, device="cpu")
    pickled = _copy(folder, tmp_path / "pickled", skip="*.safetensors")
    torch.save(load_file(folder / "model.safetensors"), pickled / "pytorch_model.bin")
    with pytest.raises(CureError, match=r"only pickle weights.*convert them once"):
        load_checkpoint(pickled, device="cpu")
    no_weights = _copy(folder, tmp_path / "no-weights", skip="*.safetensors")
    with pytest.raises(CureError, match=r"no \*\.safetensors"):
        load_checkpoint(no_weights, device="cpu")
    with pytest.raises(CureError, match=r"unknown dtype"):
        load_checkpoint(folder, dtype="fp8", device="cpu")


def test_unsupported_architecture(tmp_path):
    from transformers import BioGptConfig

    BioGptConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    ).save_pretrained(tmp_path)
    with pytest.raises(CureError, match=r"biogpt.*bridge does not support"):
        load_checkpoint(tmp_path, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda():
    with pytest.raises(CureError, match=r"no CUDA"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_empty_adapter_errors(checkpoints, tmp_path):
    folder, adapter = checkpoints["qwen2"]
    zeroed = _copy(adapter, tmp_path / "zeroed")
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file(
        {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()},
        zeroed / "adapter_model.safetensors",
    )
    with pytest.raises(CureError, match=r"empty.*lora_B tensors are zero"):
        load_checkpoint(folder, zeroed, device="cpu")
    legacy_empty = _copy(adapter, tmp_path / "legacy-empty", skip="*.safetensors")
    torch.save({}, legacy_empty / "adapter_model.bin")  # what the buggy peft versions wrote (443 bytes)
    with pytest.raises(CureError, match=r"empty.*no lora_B"):
        load_checkpoint(folder, legacy_empty, device="cpu")


def _rebased(adapter: Path, dst: Path, base: str = "someone/hub-model") -> Path:
    """A copy of ``adapter`` that names a hub id as its base, so only modules and shapes are checked."""
    _copy(adapter, dst)
    config = json.loads((dst / "adapter_config.json").read_text())
    (dst / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base}))
    return dst


def test_adapter_for_another_base_errors(checkpoints, tmp_path):
    gpt2, _ = checkpoints["gpt2"]
    qwen2, qwen2_lora = checkpoints["qwen2"]
    _, llama_lora = checkpoints["llama"]
    with pytest.raises(CureError, match=r"made for .*llama.*model_type llama vs qwen2"):  # same shapes, other base
        load_checkpoint(qwen2, llama_lora, device="cpu")
    with pytest.raises(CureError, match=r"made for .*model_type qwen2 vs gpt2"):
        load_checkpoint(gpt2, qwen2_lora, device="cpu")
    with pytest.raises(CureError, match=r"does not fit this model"):  # q_proj/v_proj do not exist in GPT-2
        load_checkpoint(gpt2, _rebased(qwen2_lora, tmp_path / "hub"), device="cpu")
    wider = _rebased(qwen2_lora, tmp_path / "wider")
    tensors = load_file(qwen2_lora / "adapter_model.safetensors")
    save_file(
        {k: torch.ones(v.shape[0], v.shape[1] * 2) if "lora_A" in k else v for k, v in tensors.items()},
        wider / "adapter_model.safetensors",
    )
    with pytest.raises(CureError, match=r"does not fit this model"):
        load_checkpoint(qwen2, wider, device="cpu")


def test_adapter_folder_errors(checkpoints, tmp_path):
    folder, adapter = checkpoints["qwen2"]
    with pytest.raises(CureError, match=r"no adapter_config.json"):
        load_checkpoint(folder, tmp_path, device="cpu")
    other = _copy(adapter, tmp_path / "ia3")
    config = json.loads((other / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(CureError, match=r"not LoRA"):
        load_checkpoint(folder, other, device="cpu")
    code = _copy(adapter, tmp_path / "code", skip="*.safetensors")
    torch.save({"lora_B": torch.ones(2), "not a tensor": Payload()}, code / "adapter_model.bin")
    with pytest.raises(CureError, match=r"cannot read the adapter weights"):
        load_checkpoint(folder, code, device="cpu")


def test_maker_cli_writes_a_loadable_checkpoint(tmp_path, monkeypatch, synthetic, capsys):
    monkeypatch.setattr("cure_core.data.load_dataset", lambda source=None: synthetic)
    assert main(["--arch", "gpt2", "--out", str(tmp_path / "m"), "--adapter", str(tmp_path / "a")]) == 0
    assert "wrote a random-weight gpt2 checkpoint" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "m").iterdir()}
    assert load_checkpoint(tmp_path / "m", tmp_path / "a", device="cpu").info.adapter.target_modules == ["c_attn"]
