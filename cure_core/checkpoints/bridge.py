"""The loaded (merged) checkpoint as a TransformerLens 4.x ``TransformerBridge``, offline.

``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)`` wraps a model
already in memory: with ``hf_model`` it reuses the model's config (no hub call for it), does
not cast or move the weights, and only switches attention to eager. ``name`` is a label here.
It does change the model in place — bridge components replace its submodules — so after
booting, run the model through the bridge. The tokenizer is handed over as a copy, because
the bridge normalises its tokenizer (padding side, BOS handling, missing special tokens).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cure_core.checkpoints.loading import LoadedCheckpoint
from cure_core.errors import CureError

if TYPE_CHECKING:  # transformer_lens is slow to import
    from transformer_lens.model_bridge import TransformerBridge


def boot_bridge(loaded: LoadedCheckpoint) -> TransformerBridge:
    """Wrap ``loaded.model`` (adapter already merged) in a ``TransformerBridge`` in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge

    param = next(loaded.model.parameters())
    try:
        bridge = TransformerBridge.boot_transformers(
            loaded.info.path,
            hf_model=loaded.model,
            tokenizer=copy.deepcopy(loaded.tokenizer),
            dtype=param.dtype,
            device=str(param.device),
        )
    except NotImplementedError as err:
        raise CureError(
            f"TransformerLens' bridge cannot wrap {loaded.info.architecture} for attribution ({err})",
            "use a model of an architecture the bridge attributes (GPT-2, Llama, Mistral, Qwen2/3, Gemma, Phi, ...)",
        ) from None
    return bridge.eval()


def load_bridge(folder: Path, device: str | None = None) -> TransformerBridge:
    """The model saved in ``folder`` (a model trained here) as a TransformerLens 4.x ``TransformerBridge``, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(folder), device=device or "cpu")
    bridge.eval()
    return bridge
