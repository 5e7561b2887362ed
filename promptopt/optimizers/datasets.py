"""The checks every optimizer makes of the examples it is given."""

from __future__ import annotations

from collections.abc import Sequence

from promptopt.core.example import Example


def check_dataset(
    name: str, data: Sequence[Example], *, who: str, none_means: str = "to use the trainset"
) -> list[Example]:
    """The dataset as a list, after the checks every optimizer needs.

    ``none_means`` says what ``valset=None`` does for this optimizer, for the error an empty
    valset gets (an empty list is never taken to mean the default).
    """
    data = list(data)
    if not data and name == "valset":
        raise ValueError(f"{who} got an empty valset: pass a validation set, or valset=None {none_means}.")
    if not data:
        raise ValueError(f"{who} needs a non-empty {name}.")
    ids = [e.id for e in data]
    if len(set(ids)) != len(ids):
        raise ValueError(f"The {name} has duplicate example ids; give each example a distinct _id.")
    return data


def train_and_val(
    trainset: Sequence[Example], valset: Sequence[Example] | None, *, who: str
) -> tuple[list[Example], list[Example]]:
    """The checked training and validation sets; ``valset=None`` validates on the training set."""
    train = check_dataset("trainset", trainset, who=who)
    return train, check_dataset("valset", train if valset is None else valset, who=who)
