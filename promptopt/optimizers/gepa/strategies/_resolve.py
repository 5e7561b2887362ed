"""Turning a strategy option (a name or an object) into the strategy, once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def resolve(option: str | T, choices: Mapping[str, Callable[[], T]], what: str, method: str) -> T:
    """``option`` itself when it has ``method``, else the strategy ``choices`` names by it."""
    if isinstance(option, str):
        if option not in choices:
            raise ValueError(
                f"{what} must be one of {sorted(choices)} or an object with {method}(), not {option!r}."
            )
        return choices[option]()
    if not callable(getattr(option, method, None)):
        raise TypeError(
            f"{what} must be one of {sorted(choices)} or an object with {method}(), not {option!r}."
        )
    return option


def name_of(option: Any) -> str:
    """How a strategy option is recorded in a result's config."""
    return option if isinstance(option, str) else type(option).__name__
