"""Unlearning methods (one registry), the shared loop, and saved runs (method.md §7–§8)."""
