"""Which training examples a GEPA iteration runs the parent and the child on."""

from __future__ import annotations

import random
from typing import Protocol

from promptopt.optimizers.gepa.state import GEPAState
from promptopt.optimizers.gepa.strategies._resolve import resolve


class MinibatchSampler(Protocol):
    def next_batch(self, state: GEPAState, size: int, rng: random.Random) -> list[str]:
        """The ids of the next minibatch of ``state.train_ids``; what the sampler must remember
        goes in ``state`` (``sampler_order``, ``sampler_pos``), so a resumed run draws alike."""
        ...


class EpochShuffledSampler:
    """Every training example once per epoch, in an order shuffled at the start of each epoch; a
    minibatch never straddles two epochs (a remainder too short for one is skipped)."""

    def next_batch(self, state: GEPAState, size: int, rng: random.Random) -> list[str]:
        n = min(size, len(state.train_ids))
        if state.sampler_pos + n > len(state.sampler_order):
            order = list(state.train_ids)
            rng.shuffle(order)
            state.sampler_order, state.sampler_pos = order, 0
        ids = state.sampler_order[state.sampler_pos : state.sampler_pos + n]
        state.sampler_pos += n
        return ids


MINIBATCH_SAMPLERS = {"epoch_shuffled": EpochShuffledSampler}


def minibatch_sampler(option: str | MinibatchSampler) -> MinibatchSampler:
    return resolve(option, MINIBATCH_SAMPLERS, "minibatch_sampler", "next_batch")
