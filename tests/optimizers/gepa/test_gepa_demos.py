"""GEPA's demo pool: a demo mutation fills, grows or swaps a demo list, spread over the classes,
within the count and character limits."""

import random

import promptopt as po
from promptopt.optimizers.gepa.demos import DemoPool

SIG = po.Signature.parse("x -> label")


def pool(n=12):
    p = DemoPool()
    labels = ["a", "b", "c"]
    rows = [po.Example(x=f"x{i}", label=labels[i % 3]).with_inputs("x") for i in range(n)]
    p.add_labeled("self", SIG, rows)
    return p


def fields(demos):
    return [d["fields"] for d in demos]


def test_an_empty_list_is_filled_to_k_with_every_class():
    demos = pool().propose("self", [], 6, random.Random(0))
    assert len(demos) == 6
    assert sorted(d["label"] for d in fields(demos)) == ["a", "a", "b", "b", "c", "c"]


def test_a_list_grows_or_swaps_about_half():
    p = pool()
    start = p.propose("self", [], 2, random.Random(0))
    sizes, kept_all = set(), 0
    for seed in range(40):
        child = p.propose("self", start, 8, random.Random(seed))
        sizes.add(len(child))
        kept = [d for d in fields(start) if d in fields(child)]
        kept_all += len(kept) == len(start)
        assert child != start
    assert sizes == {2, 8}  # swapped (same size) or grown to the limit
    assert 0 < kept_all < 40


def test_character_limit_and_no_op_proposals():
    p = DemoPool()
    p.add_labeled("self", SIG, [po.Example(x="y" * 50, label=str(i)).with_inputs("x") for i in range(6)])
    demos = p.propose("self", [], 6, random.Random(0), max_chars=160)
    assert len(demos) == 3  # 51 characters each
    one = DemoPool()
    one.add_labeled("self", SIG, [po.Example(x="only", label="a").with_inputs("x")])
    assert one.propose("self", one.propose("self", [], 4, random.Random(0)), 4, random.Random(0)) is None
