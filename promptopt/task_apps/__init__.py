"""Task apps: programs in any language, behind a small HTTP protocol, optimized by promptopt.

``protocol``  the messages (``GET /info``, ``POST /rollout``) and their JSON schemas
``client``    a client that tells an outage from a failed rollout
``server``    a Python task app from a plain function and a dataset (FastAPI + uvicorn)
"""

from promptopt.task_apps.protocol import (
    PROTOCOL,
    SCHEMAS,
    AppInfo,
    ProtocolError,
    RolloutRequest,
    RolloutResult,
)

__all__ = ["PROTOCOL", "SCHEMAS", "AppInfo", "ProtocolError", "RolloutRequest", "RolloutResult"]
