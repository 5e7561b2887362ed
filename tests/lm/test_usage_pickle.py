"""A Usage crosses process boundaries inside results (pool workers, Ray tasks)."""

import pickle

from promptopt.lm.usage import Usage
from promptopt.lm_protocol import Completion


def test_usage_pickles_with_its_counts_and_a_lock_of_its_own():
    usage = Usage()
    usage.add(Completion(text="x", prompt_tokens=3, completion_tokens=2, cost=0.5))
    copy = pickle.loads(pickle.dumps(usage))
    assert (copy.calls, copy.total_tokens, copy.cost) == (1, 5, 0.5)
    copy.add(Completion(text="y", prompt_tokens=1, completion_tokens=1))  # its lock works
    assert copy.calls == 2 and usage.calls == 1 and copy._lock is not usage._lock
