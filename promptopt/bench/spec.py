"""An experiment: tasks x programs x optimizers x LMs x seeds, a budget, and where results go.

Built from command-line flags, a TOML file (``--config experiments/x.toml``) or a preset, and
validated up front so a typo fails in the first second with the allowed values, not an hour in.

A TOML file takes the same keys as :class:`ExperimentSpec`::

    name = "iris-scone"
    tasks = ["iris", "scone"]
    programs = ["predict"]          # or ["all"]; omitted: each task's first program
    optimizers = ["baseline", "gepa"]
    lms = ["local"]                 # or lm = "local"
    reflection_lm = "local"
    seeds = [0, 1]
    budget = 100                    # metric calls per cell
    num_threads = 4
    out = "runs/langprobe/iris-scone"   # default: runs/langprobe/<name>

    [sizes]                         # or sizes = [train, val, test] for every task
    iris = [20, 20, 50]

    [optimizer_options.bootstrap_fewshot]   # keyword arguments of one optimizer
    max_labeled_demos = 4
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.bench.optimizers import OPTIMIZERS, check_optimizer_name, optimizer_entry
from promptopt.bench.records import CellConfig
from promptopt.tasks import get_task, task_names

LM_CACHE_MODES = ("shared", "per_cell")


def default_out(name: str | None) -> str:
    """Where a run writes when no ``out`` is given: its own folder under ``runs/`` (ignored by git)."""
    return f"runs/langprobe/{slug(name) if name else 'experiment'}"


class SpecError(ValueError):
    """An experiment spec names something that does not exist, or a value of the wrong kind."""


@dataclass(frozen=True)
class Cell:
    """One run of the matrix."""

    task: str
    program: str
    optimizer: str
    lm: str
    seed: int

    @property
    def key(self) -> str:
        return cell_key(self.task, self.program, self.optimizer, self.lm, self.seed)

    @property
    def baseline_key(self) -> str:
        """The (task, program, lm, seed) whose baseline evaluation every optimizer shares."""
        return cell_key(self.task, self.program, None, self.lm, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def slug(text: str) -> str:
    """A file-name-safe form of an LM string: ``openai/gpt-4o-mini`` -> ``openai-gpt-4o-mini``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "lm"


def cell_key(task: str, program: str, optimizer: str | None, lm: str, seed: int) -> str:
    parts = [task, program] + ([optimizer] if optimizer else []) + [slug(lm), f"s{seed}"]
    return "__".join(parts)


@dataclass
class ExperimentSpec:
    """What to run. ``programs=None`` means each task's first program; ``["all"]`` every program.

    ``sizes`` overrides the tasks' (train, val, test) sizes: per task name, with ``"default"`` for
    the rest. ``split_seed`` fixes the data split for every seed (``None``: each seed draws its own).
    ``proposer_lm`` (MIPROv2's instruction proposer) defaults to the reflection LM.
    ``optimizer_options`` passes keyword arguments to one optimizer, e.g.
    ``{"bootstrap_fewshot": {"max_labeled_demos": 4}}``.

    ``lm_cache`` says which LM response cache a cell's promptopt LMs use. ``"shared"``: the user's
    cache, shared by every cell and run (reruns are cheap, but a cell whose requests an earlier cell
    made runs partly warm, so wall times do not compare, and a sampled reflection can be a reply
    drawn for another cell). ``"per_cell"``: each cell starts from an empty cache of its own in its
    run directory, so every optimizer starts cold, as the DSPy peers (DSPy's cache off) always do:
    use it when wall times are compared.

    ``reuse_from`` names other experiments' output folders: a cell this spec would run that one of
    them holds as the same experiment (the same identity: config, data, LMs and code) is copied from
    there instead, marked with where it came from. Specs that differ only in what some optimizers
    do not read (the budget, the helper LMs) then share those cells, e.g. BootstrapFewShot's.
    """

    tasks: list[str]
    programs: list[str] | None = None
    optimizers: list[str] = field(default_factory=lambda: ["baseline", "gepa"])
    lms: list[str] = field(default_factory=lambda: ["local"])
    seeds: list[int] = field(default_factory=lambda: [0])
    budget: int = 200
    reflection_lm: str = "local"
    proposer_lm: str | None = None
    sizes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    split_seed: int | None = None
    num_threads: int = 4
    max_tokens: int = 512
    out: str = ""  # empty: default_out(name)
    data_dir: str | None = None
    name: str = ""
    optimizer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    lm_cache: str = "shared"
    task_apps: dict[str, str] = field(default_factory=dict)  # task name -> the app's URL
    reuse_from: list[str] = field(default_factory=list)  # other experiments' folders (see above)

    def __post_init__(self) -> None:
        if not self.out:
            self.out = default_out(self.name)

    # --- validation ---------------------------------------------------------------
    def validate(self) -> ExperimentSpec:
        if self.task_apps:
            self._register_task_apps()
        _check_list("tasks", self.tasks, task_names())
        if not self.optimizers:
            raise SpecError(f"optimizers must name at least one of: {', '.join(OPTIMIZERS)}.")
        for name in self.optimizers:
            if problem := check_optimizer_name(name):
                raise SpecError(problem)
        if len(set(self.optimizers)) != len(self.optimizers):
            raise SpecError(f"optimizers has duplicates: {self.optimizers!r}.")
        if not self.lms or not all(isinstance(x, str) and x for x in self.lms):
            raise SpecError("lms must be a non-empty list of LM strings (e.g. ['local']).")
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise SpecError(f"seeds must be a non-empty list of integers, not {self.seeds!r}.")
        if len(set(self.seeds)) != len(self.seeds):
            raise SpecError(f"seeds has duplicates: {self.seeds!r}.")
        for name in ("budget", "num_threads", "max_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecError(f"{name} must be a positive integer, not {value!r}.")
        for name in ("reflection_lm", "proposer_lm"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise SpecError(f"{name} must be an LM string (e.g. 'local'), not {value!r}.")
        if self.reflection_lm is None and any(
            "helper_lms" in optimizer_entry(name).reads for name in self.optimizers
        ):
            # Otherwise an optimizer would fall back to an LM of its own choosing, one the cells'
            # identity does not name.
            raise SpecError("reflection_lm must name an LM (e.g. 'local') for the optimizers that reflect.")
        for opt, options in self.optimizer_options.items():
            if problem := check_optimizer_name(opt):
                raise SpecError(f"optimizer_options: {problem}")
            if not isinstance(options, dict):
                raise SpecError(f"optimizer_options[{opt!r}] must be a table of keyword arguments.")
        if not isinstance(self.reuse_from, list) or not all(
            isinstance(x, str) and x for x in self.reuse_from
        ):
            raise SpecError(f"reuse_from must be a list of folder paths, not {self.reuse_from!r}.")
        if any(Path(x).resolve() == Path(self.out).resolve() for x in self.reuse_from):
            raise SpecError(f"reuse_from names the spec's own out folder {self.out!r}; name other folders.")
        if self.lm_cache not in LM_CACHE_MODES:
            raise SpecError(f"lm_cache must be one of {', '.join(LM_CACHE_MODES)}, not {self.lm_cache!r}.")
        if self.split_seed is not None and (not isinstance(self.split_seed, int) or self.split_seed < 0):
            raise SpecError(f"split_seed must be a non-negative integer, not {self.split_seed!r}.")
        for task, sz in self.sizes.items():
            if task != "default" and task not in task_names():
                raise SpecError(
                    f"sizes names an unknown task {task!r}; allowed: {', '.join(task_names())} or 'default'."
                )
            if (
                len(sz) != 3
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in sz)
                or min(sz) < 1
            ):
                raise SpecError(
                    f"sizes[{task!r}] must be three positive integers [train, val, test], not {list(sz)!r}."
                )
        if self.programs is not None:
            if not self.programs:
                raise SpecError("programs must name at least one program (or be omitted).")
            if self.programs != ["all"]:
                known = {p for t in self.tasks for p in get_task(t).programs}
                for p in self.programs:
                    if p not in known:
                        raise SpecError(
                            f"Unknown program {p!r}: the selected tasks define {', '.join(sorted(known))} "
                            "(or use 'all')."
                        )
        return self

    def _register_task_apps(self) -> None:
        if not isinstance(self.task_apps, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
            for k, v in self.task_apps.items()
        ):
            raise SpecError(f"task_apps must map task names to http(s) URLs, not {self.task_apps!r}.")
        from promptopt.task_apps.task import register_task_apps

        register_task_apps(self.task_apps)

    # --- the matrix ---------------------------------------------------------------
    def programs_for(self, task: str) -> list[str]:
        defined = list(get_task(task).programs)
        if self.programs is None:
            return defined[:1]
        if self.programs == ["all"]:
            return defined
        return [p for p in self.programs if p in defined]

    def cells(self) -> list[Cell]:
        """In run order: for each (task, program, lm, seed) the optimizers one after another."""
        return [
            Cell(t, p, o, lm, s)
            for t in self.tasks
            for p in self.programs_for(t)
            for lm in self.lms
            for s in self.seeds
            for o in self.optimizers
        ]

    def sizes_for(self, task: str) -> tuple[int, int, int]:
        if task in self.sizes:
            return tuple(self.sizes[task])  # type: ignore[return-value]
        if "default" in self.sizes:
            return tuple(self.sizes["default"])  # type: ignore[return-value]
        return tuple(get_task(task).sizes)

    def reads_helper_lms(self, cell: Cell) -> bool:
        """Whether the cell's optimizer calls the reflection or proposer LM."""
        return "helper_lms" in optimizer_entry(cell.optimizer).reads

    def cell_config(self, cell: Cell) -> CellConfig:
        """What a cell's result depends on: a stored cell with another config is not reused."""
        reads = optimizer_entry(cell.optimizer).reads
        helpers = self.reads_helper_lms(cell)
        return CellConfig(
            task=cell.task,
            program=cell.program,
            optimizer=cell.optimizer,
            lm=cell.lm,
            seed=cell.seed,
            budget=self.budget if "budget" in reads else 0,
            reflection_lm=self.reflection_lm if helpers else None,
            proposer_lm=(self.proposer_lm or self.reflection_lm) if helpers else None,
            sizes=tuple(self.sizes_for(cell.task)),
            split_seed=cell.seed if self.split_seed is None else self.split_seed,
            max_tokens=self.max_tokens,
            optimizer_options=dict(self.optimizer_options.get(cell.optimizer, {})),
            lm_cache=self.lm_cache,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sizes"] = {k: list(v) for k, v in self.sizes.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "the spec") -> ExperimentSpec:
        data = dict(data)
        allowed = {f.name for f in dataclasses.fields(cls)} | {"lm"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SpecError(
                f"Unknown key {unknown[0]!r} in {source}; allowed keys: {', '.join(sorted(allowed))}."
            )
        if "lm" in data:
            if "lms" in data:
                raise SpecError(f"Give lm or lms in {source}, not both.")
            data["lms"] = [data.pop("lm")]
        if "tasks" not in data:
            raise SpecError(f"{source} must name tasks, e.g. tasks = ['iris'].")
        for key in ("tasks", "programs", "optimizers", "lms", "seeds", "reuse_from"):
            if key in data and data[key] is not None:
                value = data[key]
                if isinstance(value, str | int) and not isinstance(value, bool):
                    value = [value]
                if not isinstance(value, list):
                    raise SpecError(f"{key} in {source} must be a list, not {value!r}.")
                data[key] = value
        if "sizes" in data:
            data["sizes"] = _parse_sizes(data["sizes"], source)
        for key in ("budget", "num_threads", "max_tokens", "split_seed"):
            if key in data and data[key] is not None and not isinstance(data[key], int):
                raise SpecError(f"{key} in {source} must be an integer, not {data[key]!r}.")
        if "task_apps" in data and not isinstance(data["task_apps"], dict):
            raise SpecError(f"task_apps in {source} must be a table of name = URL.")
        if "optimizer_options" in data and not isinstance(data["optimizer_options"], dict):
            raise SpecError(f"optimizer_options in {source} must be a table per optimizer.")
        for key in ("out", "data_dir", "name", "reflection_lm", "proposer_lm", "lm_cache"):
            if key in data and data[key] is not None and not isinstance(data[key], str):
                raise SpecError(f"{key} in {source} must be a string, not {data[key]!r}.")
        return cls(**data).validate()

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentSpec:
        p = Path(path)
        if not p.exists():
            raise SpecError(f"No experiment file {p}.")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{p} is not valid TOML: {exc}") from exc
        data.setdefault("name", p.stem)
        return cls.from_dict(data, source=str(p))


def _parse_sizes(value: Any, source: str) -> dict[str, tuple[int, int, int]]:
    if isinstance(value, list):
        value = {"default": value}
    if not isinstance(value, dict):
        raise SpecError(f"sizes in {source} must be [train, val, test] or a table of them per task.")
    out = {}
    for task, sz in value.items():
        if not isinstance(sz, list | tuple) or len(sz) != 3:
            raise SpecError(f"sizes[{task!r}] in {source} must be [train, val, test], not {sz!r}.")
        out[task] = tuple(sz)
    return out


def _check_list(name: str, values: list[str], allowed: tuple[str, ...]) -> None:
    if not values:
        raise SpecError(f"{name} must name at least one of: {', '.join(allowed)}.")
    for v in values:
        if v not in allowed:
            raise SpecError(f"Unknown {name[:-1]} {v!r}; allowed: {', '.join(allowed)}.")
    if len(set(values)) != len(values):
        raise SpecError(f"{name} has duplicates: {values!r}.")


# --- presets -----------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on two CPU cores with the 0.5B local model: two short-answer classification tasks.
    "quick": {
        "name": "quick",
        "tasks": ["iris", "scone"],
        "programs": ["predict"],
        "optimizers": ["baseline", "bootstrap_fewshot", "gepa"],
        "lms": ["local"],
        "reflection_lm": "local",
        "seeds": [0],
        "budget": 50,
        "sizes": {"default": (10, 10, 30)},
        "split_seed": 0,
        "num_threads": 2,
        "max_tokens": 256,
    },
    # Every task, program and optimizer at the tasks' own split sizes: meant for an API model
    # (--lm openai/gpt-4.1-mini --reflection-lm openai/gpt-4.1); days on the local model.
    "full": {
        "name": "full",
        "tasks": None,  # all tasks
        "programs": ["all"],
        "optimizers": list(OPTIMIZERS),
        "lms": ["local"],
        "reflection_lm": "local",
        "seeds": [0, 1, 2],
        "budget": 500,
        "split_seed": 0,
        "num_threads": 8,
    },
}


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise SpecError(f"Unknown preset {name!r}; presets: {', '.join(PRESETS)}.")
    data = {k: (list(v) if isinstance(v, list) else v) for k, v in PRESETS[name].items()}
    if data.get("tasks") is None:
        data["tasks"] = list(task_names())
    data["sizes"] = dict(data.get("sizes", {}))
    data["optimizer_options"] = {k: dict(v) for k, v in data.get("optimizer_options", {}).items()}
    return data
