"""LangProBe tasks: dataset loaders, seeded splits, programs and metrics.

Each task module under :mod:`langprobe.tasks` defines one :class:`Task`.
Loaders read a local mirror directory first (argument, ``$PROMPTOPT_DATA_DIR``,
or a ``shared/data`` folder beside the checkout) and fall back to the Hugging
Face hub through ``datasets`` for users who are online.
"""

from langprobe.registry import TASKS, get_task
from langprobe.task import Splits, Task, mirror_dir

__all__ = ["TASKS", "Splits", "Task", "get_task", "mirror_dir"]
