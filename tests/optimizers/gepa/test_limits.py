"""Reflection limits sized to the reflection LM's context window."""

from __future__ import annotations

import pytest

from promptopt.optimizers.gepa.config import GEPAConfig
from promptopt.optimizers.gepa.limits import ReflectionLimits, context_window, reflection_limits


def test_the_reference_window_keeps_the_sizes_the_local_models_were_tuned_on():
    assert reflection_limits(8192) == ReflectionLimits(4, 600, 4000, 1024)
    assert reflection_limits(None) == reflection_limits(8192)


def test_limits_grow_with_the_window_within_bounds():
    small, large, huge = reflection_limits(2048), reflection_limits(32768), reflection_limits(1_000_000)
    assert small == ReflectionLimits(2, 300, 1000, 512)
    assert large == ReflectionLimits(16, 2000, 16000, 4096)
    assert huge == large  # a huge window does not make every reflection prompt huge
    for limits in (small, large):
        # the reply can hold the longest instruction accepted (about 4 characters a token)
        assert limits.reflection_max_tokens * 4 >= limits.max_instruction_chars


class _Windowed:
    def __init__(self, tokens):
        self.tokens = tokens

    def context_window(self):
        if isinstance(self.tokens, Exception):
            raise self.tokens
        return self.tokens

    def __call__(self, messages, **options):
        raise AssertionError("not called")


@pytest.mark.parametrize(
    ("lm", "expected"),
    [
        (_Windowed(32768), 32768),
        (_Windowed(None), None),
        (_Windowed(RuntimeError("down")), None),
        (len, None),
    ],
)
def test_context_window_of_an_lm(lm, expected):
    assert context_window(lm) == expected


def test_unset_limits_are_fitted_and_explicit_ones_kept():
    config = GEPAConfig(max_metric_calls=10, max_reflection_chars=123)
    fitted = config.fitted_to(_Windowed(32768))
    assert (fitted.max_reflection_examples, fitted.max_reflection_chars) == (16, 123)
    assert (fitted.max_instruction_chars, fitted.reflection_max_tokens) == (16000, 4096)


def test_a_run_records_the_fitted_limits_and_asks_for_that_many_reply_tokens(tmp_path):
    from tests.optimizers.gepa.test_gepa import rules_reflector, run

    reflector = rules_reflector()
    reflector.context_window = lambda: 16384
    result = run(tmp_path / "run", reflection_lm=reflector)
    assert result.config["max_reflection_examples"] == 8
    assert result.config["reflection_max_tokens"] == 2048
    assert reflector.calls and all(call["options"]["max_tokens"] == 2048 for call in reflector.calls)


def test_a_reflection_lm_with_its_own_reply_length_keeps_it_and_zero_means_no_cap():
    lm = _Windowed(8192)
    lm.defaults = {"max_tokens": 250}  # the user's choice, shorter or longer than the fitted 1024
    fitted = GEPAConfig(max_metric_calls=10, max_instruction_chars=0).fitted_to(lm)
    assert fitted.reflection_max_tokens is None and fitted.max_instruction_chars == 0
    assert fitted.max_reflection_examples == 4  # the prompt side is still fitted to the window
    assert (
        GEPAConfig(max_metric_calls=10, reflection_max_tokens=300).fitted_to(lm).reflection_max_tokens == 300
    )
