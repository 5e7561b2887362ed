"""Task apps: programs in any language, behind a small HTTP protocol, optimized by promptopt.

``protocol``  the messages (``GET /info``, ``POST /rollout``) and their JSON schemas
``client``    a client that tells an outage from a failed rollout
``server``    a Python task app from a plain function and a dataset (FastAPI + uvicorn)
``program``   ``TaskApp.connect(url, lm=...)``: the app as a Program (its prompts are its components)
``proxy``     the inference proxy: one OpenAI-compatible URL per rollout, the candidate's prompts
              substituted, every call traced and sent through a promptopt LM
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
