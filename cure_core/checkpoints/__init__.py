"""Users' own Hugging Face checkpoints: loading with a LoRA adapter, and the TransformerLens bridge."""

from cure_core.checkpoints.adapters import AdapterInfo, merge_adapter
from cure_core.checkpoints.bridge import boot_bridge
from cure_core.checkpoints.loading import (
    DEVICES,
    DTYPES,
    CheckpointInfo,
    LoadedCheckpoint,
    load_checkpoint,
    resolve_device,
)

__all__ = [
    "DEVICES",
    "DTYPES",
    "AdapterInfo",
    "CheckpointInfo",
    "LoadedCheckpoint",
    "boot_bridge",
    "load_checkpoint",
    "merge_adapter",
    "resolve_device",
]
