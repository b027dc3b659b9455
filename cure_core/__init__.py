"""CURE Studio core: data and prompts, the recommender, forget requests, metrics, evaluation, CLI."""
