"""Every bad input about a user's own checkpoint (``--model``, ``--adapter``, ``--profile`` and
the damaged folders and profile files behind them): exit status 2, one line ``error: ... — fix:
...``, no traceback, nothing written to the cache."""

from __future__ import annotations

import shlex

import pytest

from tests.cli_errors import assert_one_error_line, run, written


def _zeroed_adapter(adapter, dst):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, dst)
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file(
        {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()}, dst / "adapter_model.safetensors"
    )
    return dst


def _pickle_only(folder, dst):
    import shutil

    shutil.copytree(folder, dst)
    (dst / "model.safetensors").rename(dst / "pytorch_model.bin")
    return dst


# (arguments as in CASES with {model}/{adapter}/{other_adapter}/{tmp} placeholders, expected text): the
# user-model inputs
USER_MODEL_CASES: list[tuple[str, str]] = [
    ("evaluate --adapter {adapter}", "--adapter (CURE_ADAPTER) applies to a user's checkpoint"),
    ("evaluate --retrain-adapter {adapter}", "--retrain-adapter (CURE_RETRAIN_ADAPTER) applies to a user's checkpoint"),
    ("evaluate --model {tmp}/missing", "no folder at"),
    ("evaluate --model {model} --dtype fp16", "invalid choice: 'fp16'"),
    ("evaluate --model {model} --device tpu", "invalid choice: 'tpu'"),
    ("evaluate --model {model} --profile nope", "no prompt profile 'nope'"),
    ("evaluate --model {tmp}", "no config.json"),
    ("evaluate --model {pickled}", "holds only pickle weights"),
    ("evaluate --model {model} --adapter {other_adapter}", "adapter"),
    ("evaluate --model {model} --adapter {zeroed}", "lora_B tensors are zero"),
    ("evaluate --model {model} --which retrain", "no Retrain was given"),
    ("attribute --model {model} --corruption user", "writes no user"),
    ("study pareto --model {model}", "not available yet"),
    ("unlearn --method ga --model {model} --lora --lora-rank 0", "--lora-rank"),
    ("unlearn --method ga --model {model} --lora-rank 4", "add --lora"),
    ("unlearn --method ga --model {model} --lora-alpha 8", "--lora-alpha applies to LoRA runs"),
    ("unlearn --method ga --model {model} --lora-targets q_proj", "add --lora"),
    ("unlearn --method ga --model {model} --save-merged", "--save-merged applies to LoRA runs"),
    ("compare --model {model} --lora-rank 4", "add --lora"),
    ("train --model {model}", "unrecognized arguments"),
    ("evaluate --model {damaged:missing-tensors}", "lack tensor(s) that the architecture in config.json needs"),
    ("evaluate --model {damaged:extra-tensor}", "hold tensor(s) that the architecture in config.json does not"),
    ("evaluate --model {damaged:truncated}", "are damaged"),
    ("evaluate --model {damaged:bert-config}", "names BertForMaskedLM, not a causal language model"),
    ("evaluate --model {damaged:no-tokenizer}", "has no tokenizer files"),
    ("evaluate --model {model} --adapter {damaged:adapter-rank}", "size mismatch for"),
    ("evaluate --model {model} --adapter {damaged:adapter-modules-to-save}", "lack the tensor"),
    ("evaluate --model {model} --retrain-model {gpt2}", "does not match the model: architecture"),
    ("evaluate --model {model} --retrain-model {damaged:other-tokenizer}", "another tokenizer"),
    ("forget --model {damaged:bert-config}", "not a causal language model"),
    ("evaluate --model {model} --profile {profile:huge-range}", "fails when rendered (OverflowError"),
    ("evaluate --model {model} --profile {profile:escape}", "fails when rendered (SecurityError"),
    ("evaluate --model {model} --profile {profile:long}", "at most 65536 characters"),
    ("evaluate --model {model} --profile {profile:answer-key}", "[answer] has unknown key(s) ['maybe']"),
]

PROFILES = {
    "huge-range": ("{% for i in range(10**9) %}{{ i }}{% endfor %}{{ target }}", ""),
    "escape": ("{{ target.__class__.__mro__[1].__subclasses__() }}", ""),
    "long": ("{{ target * 100000 }}", ""),
    "answer-key": ("{{ target }}", 'maybe = "Perhaps"\n'),
}


def _damaged(model, adapter, tmp_path, name: str) -> str:
    """A copy of the qwen2 checkpoint (or its adapter) damaged as ``name`` says."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from cure_core.model.example_checkpoint import train_tokenizer

    source = adapter if name.startswith("adapter") else model
    out = tmp_path / name
    shutil.copytree(source, out)
    weights = out / "model.safetensors"
    if name in ("missing-tensors", "extra-tensor"):
        tensors = load_file(weights)
        if name == "missing-tensors":
            del tensors[sorted(tensors)[-1]]
        else:
            tensors["model.extra.weight"] = torch.zeros(3)
        save_file(tensors, weights, metadata={"format": "pt"})
    elif name == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif name == "no-tokenizer":
        for path in out.iterdir():
            if path.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
                path.unlink()
    elif name == "other-tokenizer":
        train_tokenizer(["another corpus of words", "for another tokenizer"] * 50, vocab_size=300).save_pretrained(out)
    else:
        config_file = out / ("adapter_config.json" if name.startswith("adapter") else "config.json")
        config = json.loads(config_file.read_text())
        changes = {
            "bert-config": lambda c: {"architectures": ["BertForMaskedLM"]},
            "adapter-rank": lambda c: {"r": c["r"] // 2},
            "adapter-modules-to-save": lambda c: {"modules_to_save": ["lm_head"]},
        }
        config |= changes[name](config)
        config_file.write_text(json.dumps(config))
    return str(out)


def _profile(tmp_path, name: str) -> str:
    """A profile file whose prompt template (or [answer] table) is ``PROFILES[name]``."""
    template, answer_extra = PROFILES[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"template = '''{template}'''\n[item]\ntemplate = '{{{{ name }}}}'\n[history]\n"
        f'entry = \'{{{{ item }}}}\'\n[answer]\nyes = "Yes"\nno = "No"\n{answer_extra}'
    )
    return str(path)


@pytest.mark.parametrize(("command", "expected"), USER_MODEL_CASES, ids=[command for command, _ in USER_MODEL_CASES])
def test_bad_user_model_input_is_one_line(
    capsys, isolated_cache, grouplens_dir, user_checkpoints, tmp_path, command, expected
):
    argv = shlex.split(command)
    model, adapter = user_checkpoints["qwen2"]
    places = {
        "model": model,
        "adapter": adapter,
        "other_adapter": user_checkpoints["llama"][1],
        "gpt2": user_checkpoints["gpt2"][0],
        "tmp": tmp_path,
    }
    if "{zeroed}" in argv:
        places["zeroed"] = _zeroed_adapter(adapter, tmp_path / "zeroed")
    if "{pickled}" in argv:
        places["pickled"] = _pickle_only(model, tmp_path / "pickled")
    makers = {
        "profile": lambda name: _profile(tmp_path, name),
        "damaged": lambda n: _damaged(model, adapter, tmp_path, n),
    }
    filled = [
        makers[part[1:].split(":")[0]](part[:-1].split(":")[1]) if ":" in part else part.format(**places)
        for part in argv
    ]
    code, _, err = run(capsys, [*filled, "--data", grouplens_dir])
    assert_one_error_line(code, err, expected)
    assert written(isolated_cache) == []
