"""The contract every optimizer relies on: examples, signatures, programs, traces, metrics."""
