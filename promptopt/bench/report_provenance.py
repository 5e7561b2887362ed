"""The report's provenance and LM-cache sections: which code, versions, LMs and data made the cells,
and from which cache state they ran."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from promptopt.bench.aggregate import optimizer_order
from promptopt.bench.records import CellRecord
from promptopt.provenance import Provenance


def _cache_share(c: CellRecord) -> float | None:
    spent = c.finished().spending
    if not spent.lm_calls or spent.uncached_lm_calls is None:
        return None
    return 1.0 - spent.uncached_lm_calls / spent.lm_calls


def cache_lines(cells: Sequence[CellRecord]) -> list[str]:
    """How warm each optimizer's cells ran: wall times compare only between cells that started from
    the same LM-cache state."""
    ok = [c for c in cells if c.ok and c.config.optimizer != "baseline"]
    if not ok:
        return []
    modes = sorted({c.config.lm_cache for c in ok})
    per: dict[str, list[float]] = defaultdict(list)
    for c in ok:
        share = _cache_share(c)
        if share is not None:
            per[c.config.optimizer].append(share)
    if modes == ["per_cell"]:
        state = (
            'Every cell ran with `lm_cache = "per_cell"`: each started from an empty LM cache of its '
            "own (the DSPy peers call the model without one), so the wall times compare."
        )
    else:
        state = (
            'Cells ran with the shared LM cache (`lm_cache = "shared"`): a cell answers from the cache '
            "what an earlier cell or run asked, so **wall times do not compare** between optimizers "
            'whose shares below differ; rerun with `lm_cache = "per_cell"` for a timing comparison.'
        )
    shares = ", ".join(
        f"{opt} {100 * float(np.mean(v)):.0f}%"
        for opt, v in sorted(per.items(), key=lambda kv: optimizer_order(kv[0]))
    )
    return ["## LM-cache state", "", state, f"LM calls answered from a cache, mean per cell: {shares}.", ""]


def _provenance_key(prov: Provenance) -> str:
    return json.dumps(
        {
            "commit": prov.code.commit,
            "dirty": prov.code.dirty,
            "source": prov.code.source_sha256,
            "packages": dict(prov.packages),
            "cpu": prov.cpu.get("model"),
        },
        sort_keys=True,
    )


def provenance_lines(cells: Sequence[CellRecord]) -> list[str]:
    """Which code, packages, machine, LMs and data made the cells, and which cells carry none."""
    groups: dict[str, list[Provenance]] = defaultdict(list)
    missing = []
    for c in cells:
        if c.provenance is not None:
            groups[_provenance_key(c.provenance)].append(c.provenance)
        else:
            missing.append(c.key)
    lines = ["## Provenance", ""]
    if len(groups) > 1:
        lines += [f"**The cells come from {len(groups)} different code versions or environments.**", ""]
    for members in groups.values():
        prov = members[0]
        code, cpu = prov.code, prov.cpu
        commit = code.commit or "no git checkout"
        dirty = " with uncommitted changes" if code.dirty else ""
        packages = ", ".join(f"{k} {v}" for k, v in prov.packages.items() if v)
        lms: dict[str, str] = {}
        data: dict[str, str] = {}
        for member in members:
            for role, ident in member.lms.items():
                sha = f" (sha256 {ident['sha256'][:16]}…)" if ident.get("sha256") else ""
                lms[f"`{ident.get('model')}`{sha}"] = role
            for task, ident in member.data.items():
                data[task] = (ident.get("files_sha256") or "from the hub")[:16]
        lines += [
            f"- {len(members)} cells: promptopt {code.version} at commit `{commit}`{dirty}, "
            f"sources sha256 `{code.source_sha256[:16]}…`; {packages}; Python "
            f"{prov.python}; {cpu.get('model')} ({cpu.get('cores')} cores).",
            f"  LMs: {', '.join(sorted(lms))}. Data files sha256: "
            + ", ".join(f"{t} `{h}…`" for t, h in sorted(data.items()))
            + ".",
            f"  Command: `{prov.command}`.",
        ]
    copied: dict[str, list[str]] = defaultdict(list)
    for c in cells:
        if c.copied_from:
            copied[c.copied_from].append(c.key)
    for folder, keys in sorted(copied.items()):
        lines.append(
            f"- {len(keys)} cells were copied from `{folder}` (relative to this folder), where they ran "
            "as the same experiment "
            "(the same config, data, LMs and code; the budget and helper LMs are not part of the config "
            "of optimizers that read neither): " + ", ".join(f"`{k}`" for k in sorted(keys))
        )
    if missing:
        lines.append(
            f"- {len(missing)} cells carry no provenance (stored by older code; `bench langprobe` on the "
            "same folder reruns them): "
            + ", ".join(f"`{k}`" for k in missing[:8])
            + (" …" if len(missing) > 8 else "")
        )
    lines.append("")
    return lines
