"""The checks the model configurations share in `validate_architecture` (no torch: configurations import no model
code). Each raises a one-line `ValueError` naming the config class, the field and its value."""

from __future__ import annotations


def check_at_least(config, minimum: int, *names: str) -> None:
    """Every field in `names` (an int, or a list of ints) is at least `minimum`."""
    for name in names:
        value = getattr(config, name)
        if min(value if isinstance(value, (list, tuple)) else [value]) < minimum:
            raise ValueError(f"{type(config).__name__}.{name} must be >= {minimum}, got {value}")


def check_multiple(config, size: str, heads: str) -> None:
    """The field `size` (a feature size) is a multiple of the field `heads` (attention heads)."""
    if getattr(config, size) % getattr(config, heads):
        raise ValueError(f"{size} ({getattr(config, size)}) must be a multiple of {heads} ({getattr(config, heads)})")


def check_choice(config, name: str, choices: tuple) -> None:
    """The field `name` is one of `choices`."""
    value = getattr(config, name)
    if value not in choices:
        options = " or ".join(map(repr, choices)) if len(choices) == 2 else f"one of {tuple(choices)}"
        raise ValueError(f"{type(config).__name__}.{name} must be {options}, got {value!r}")
