"""Optimization runs in the tracking tools users already have.

``mlflow``  :class:`MLflowCallback`: config, per-iteration metrics, the best program, the result and
            the run page as artifacts of an MLflow run (``pip install 'promptopt[mlflow]'``)
"""

from promptopt.tracking.mlflow import MLflowCallback

__all__ = ["MLflowCallback"]
