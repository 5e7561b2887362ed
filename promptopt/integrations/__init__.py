"""Bridges to other prompt-optimization frameworks.

``promptopt.integrations.dspy`` exports promptopt programs, metrics, data and
LMs to DSPy (so DSPy's optimizers can start from a promptopt seed) and imports
what they found back. Each bridge imports its framework only when used.
"""
