"""Prompt profiles: how a user's checkpoint is prompted (data files) and the encoder that writes them."""

from cure_core.profiles.answers import answer_token_id, answer_token_ids
from cure_core.profiles.encoder import ProfileEncoder, PromptWriter
from cure_core.profiles.profile import SHIPPED_PROFILES, Profile, load_profile

__all__ = [
    "SHIPPED_PROFILES",
    "Profile",
    "ProfileEncoder",
    "PromptWriter",
    "answer_token_id",
    "answer_token_ids",
    "load_profile",
]
