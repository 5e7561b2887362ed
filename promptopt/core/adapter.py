"""Render a predictor call into chat messages and parse the reply back.

The format is deliberately plain (``field: value`` lines) because small local
models follow it far more reliably than bracketed or JSON formats. Parsing is
tolerant of what such models actually write: markdown bold or headings around
field names, DSPy's ``[[ ## field ## ]]`` markers, a JSON object, a bare
answer when the signature has a single output, and a chain of thought that
ends in a stated answer (``\\boxed{42}``, "The answer is 42.") instead of its
last field's line. What still cannot be read raises :class:`ParseError`,
which the predictor records in the trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from promptopt.core.signature import Field, Signature

# Fields a model may leave out without the call failing: the reasoning of a
# chain-of-thought predictor is useful but not what the metric scores.
OPTIONAL_OUTPUTS = frozenset({"reasoning"})


class ParseError(ValueError):
    """The LM reply could not be turned into the signature's output fields."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


class Adapter(Protocol):
    def format(
        self, signature: Signature, demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[dict[str, str]]: ...

    def parse(self, signature: Signature, text: str) -> dict[str, Any]: ...


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return "\n".join(f"- {v}" for v in value) if value else "[]"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _describe(f: Field) -> str:
    parts = [f"- {f.name}"]
    detail = f.desc
    if f.choices:
        detail = (detail + " " if detail else "") + "One of: " + ", ".join(f.choices) + "."
    elif f.type != "str":
        detail = (detail + " " if detail else "") + {
            "int": "An integer.",
            "float": "A number.",
            "bool": "yes or no.",
            "list": "A list, one item per line starting with '- '.",
        }[f.type]
    if detail:
        parts.append(f": {detail}")
    return "".join(parts)


class ChatAdapter:
    """``field: value`` chat format with a tolerant parser (the default adapter)."""

    def system_message(self, signature: Signature) -> str:
        lines = [signature.instruction.strip(), ""]
        if signature.inputs:
            lines.append("Input fields:")
            lines.extend(_describe(f) for f in signature.inputs)
        lines.append("Output fields:")
        lines.extend(_describe(f) for f in signature.outputs)
        lines.append("")
        lines.append(self._reply_format(signature))
        return "\n".join(lines)

    def _reply_format(self, signature: Signature) -> str:
        order = "\n".join(f"{f.name}: ..." for f in signature.outputs)
        return (
            "Reply with each output field on its own line, in this order, "
            "starting with the field name and a colon:\n" + order
        )

    def user_message(self, signature: Signature, inputs: Mapping[str, Any]) -> str:
        missing = [n for n in signature.input_names if n not in inputs]
        if missing:
            raise KeyError(f"The call is missing input field(s) {missing} of signature '{signature}'.")
        return "\n\n".join(f"{n}: {_render_value(inputs[n])}" for n in signature.input_names)

    def assistant_message(self, signature: Signature, outputs: Mapping[str, Any]) -> str:
        return "\n".join(f"{n}: {_render_value(outputs[n])}" for n in signature.output_names if n in outputs)

    def format(
        self, signature: Signature, demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system_message(signature)}]
        for demo in demos:
            if not all(n in demo for n in signature.input_names):
                continue  # a demo for another signature shape: skip rather than mislead
            shown = {n: demo[n] for n in signature.output_names if n in demo}
            if not any(n in shown for n in signature.output_names if n not in OPTIONAL_OUTPUTS):
                continue
            messages.append({"role": "user", "content": self.user_message(signature, demo)})
            messages.append({"role": "assistant", "content": self.assistant_message(signature, shown)})
        messages.append({"role": "user", "content": self.user_message(signature, inputs)})
        return messages

    # Parsing -----------------------------------------------------------
    def parse(self, signature: Signature, text: str) -> dict[str, Any]:
        if text is None or not str(text).strip():
            raise ParseError("The model returned an empty reply.", text or "")
        text = str(text)
        spans = _find_fields(signature.output_names, text)
        if not spans:
            spans = _json_fields(signature.output_names, text)
        required = [n for n in signature.output_names if n not in OPTIONAL_OUTPUTS]
        if not spans and len(required) == 1:
            # A single required output and no field names: the whole reply is the answer.
            spans = {required[0]: _strip_value(text)}
        missing = [n for n in required if n not in spans]
        if spans and missing == [signature.output_names[-1]]:
            # Small models often end their reasoning with the answer in prose or LaTeX and stop
            # there; the answer they state is the one they meant to write in the last field.
            stated = _stated_answer(text) or _closing_choice(text, signature.outputs[-1].choices)
            if stated is not None:
                spans[missing.pop()] = stated
        if missing:
            raise ParseError(
                f"The reply lacks the output field(s) {missing}; expected lines starting with "
                + ", ".join(f"'{n}:'" for n in signature.output_names),
                text,
            )
        out: dict[str, Any] = {}
        for f in signature.outputs:
            if f.name in spans:
                out[f.name] = coerce(f, spans[f.name], text)
            else:
                out[f.name] = ""
        return out


def _header_pattern(name: str) -> str:
    words = r"[ _]".join(re.escape(w) for w in name.split("_"))
    # Optional markdown/bracket decoration around the name, then a colon.
    colon_form = (
        r"^[ \t>*#\-]*(?:\[\[\s*##\s*)?\**_*\s*" + words + r"\s*\**_*\s*"
        r"(?:##\s*\]\])?\s*\**\s*(?::|：|(?<=\]\]))\**"
    )
    heading_form = r"^[ \t]*#{1,6}[ \t]*\**" + words + r"\**[ \t]*$"  # '### Answer' on its own line
    return f"(?:{colon_form})|(?:{heading_form})"


def _find_fields(names: Sequence[str], text: str) -> dict[str, str]:
    hits: list[tuple[int, int, str]] = []
    for name in names:
        pat = re.compile(_header_pattern(name), re.IGNORECASE | re.MULTILINE)
        m = pat.search(text)
        if m:
            hits.append((m.start(), m.end(), name))
    hits.sort()
    spans: dict[str, str] = {}
    for i, (_, end, name) in enumerate(hits):
        stop = hits[i + 1][0] if i + 1 < len(hits) else len(text)
        spans[name] = _strip_value(text[end:stop])
    return spans


def _json_fields(names: Sequence[str], text: str) -> dict[str, str]:
    m = re.search(r"\{.*\}", text, re.DOTALL)
    if not m:
        return {}
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return {}
    if not isinstance(obj, dict):
        return {}
    lowered = {str(k).lower(): v for k, v in obj.items()}
    return {n: v if isinstance(v, str) else json.dumps(v) for n in names if (v := lowered.get(n)) is not None}


_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_STATED = re.compile(
    r"\b(?:final\s+answer|answer)\b(?:\s+to\s+[^\n:]{0,60}?)?\s*(?:is\s*:?|:|=)[ \t]*(\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def _stated_answer(text: str) -> str | None:
    """The answer a reply states in closing: its last ``\\boxed{...}``, else its last "answer is ..."."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    stated = _STATED.findall(text)
    if not stated:
        return None
    value = stated[-1].strip()
    value = re.sub(r"^\\\(|\\\)\.?$|^\$+|\$+\.?$", "", value).strip()  # \( 42 \), $42$
    value = _strip_value(value.rstrip(".").strip())
    return value if re.search(r"\w", value) else None


def _closing_choice(text: str, choices: Sequence[str] | None) -> str | None:
    """The label a reply's closing sentence settles on ("... the species is setosa."), for a closed
    field: the sentence names exactly one of its choices, as the object of its final "is"/"are"."""
    if not choices:
        return None
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]
    if not sentences:
        return None
    last = sentences[-1]
    named = [c for c in choices if re.search(r"(?<!\w)" + re.escape(c) + r"(?!\w)", last, re.IGNORECASE)]
    if len(named) != 1:
        return None
    found = [
        c
        for c in choices
        if re.search(
            r"\b(?:is|are)\s+(?:most\s+likely\s+|likely\s+|probably\s+)?(?:an?\s+|the\s+)?[\"'*`]*"
            + re.escape(c)
            + r"[\"'*`]*\W*$",
            last,
            re.IGNORECASE,
        )
    ]
    return found[0] if len(found) == 1 else None


_END_MARKERS = re.compile(r"\[\[\s*##\s*completed\s*##\s*\]\]\s*$", re.IGNORECASE)


def _strip_value(value: str) -> str:
    value = _END_MARKERS.sub("", value).strip()
    if value.startswith("```") and value.endswith("```") and value.count("```") == 2:
        value = value.strip("`")
        value = value.split("\n", 1)[1] if "\n" in value else value
    value = value.strip()
    # Emphasis around the whole value ("**42**") goes; a leading "* " bullet is content and stays.
    wrapped = re.fullmatch(r"(\*{1,2})(?!\s)(.+?)(?<!\s)\1", value, re.DOTALL)
    if wrapped and "\n" not in wrapped.group(2):
        value = wrapped.group(2)
    elif value.endswith("**") and value.count("**") == 1:
        value = value[:-2]  # the closing half of a bold field name
    return value.strip()


_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def coerce(f: Field, value: str, raw: str = "") -> Any:
    """Convert the text of one field into the field's type (or raise ParseError)."""
    if f.choices:
        return _choose(f, value, raw)
    if f.type == "str":
        return value
    if f.type in ("int", "float"):
        m = _NUMBER.search(value)
        if not m:
            raise ParseError(f"Field '{f.name}' should be a number, got {value!r}.", raw)
        number = float(m.group(0).replace("$", "").replace(",", ""))
        if f.type == "int":
            return int(number) if number.is_integer() else number
        return number
    if f.type == "bool":
        word = value.strip().lower().split()[0].strip(".,!") if value.strip() else ""
        if word in ("yes", "true", "1", "y"):
            return True
        if word in ("no", "false", "0", "n"):
            return False
        raise ParseError(f"Field '{f.name}' should be yes or no, got {value!r}.", raw)
    if f.type == "list":
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
                if isinstance(items, list):
                    return [str(i) for i in items]
            except json.JSONDecodeError:
                pass
        lines = [ln.strip() for ln in stripped.splitlines() if ln.strip()]
        if len(lines) > 1 or (lines and lines[0][:2] in ("- ", "* ")):
            return [re.sub(r"^(?:[-*]|\d+[.)])\s*", "", ln) for ln in lines]
        return [s.strip() for s in stripped.split(",") if s.strip()]
    raise ParseError(f"Unknown field type {f.type!r}.", raw)


def _choose(f: Field, value: str, raw: str) -> str:
    assert f.choices is not None

    def norm(text: str) -> str:  # 'NOT SUPPORTED', 'not_supported' and 'Not-supported' are one label
        return " ".join(re.sub(r"[\s_\-]+", " ", text.lower()).split())

    clean = norm(value.strip().strip(".'\"`*"))
    for c in f.choices:
        if clean == norm(c):
            return c

    def named_in(text: str) -> list[str]:  # the choices ``text`` names as whole words
        return [c for c in f.choices if re.search(r"(?<![\w])" + re.escape(norm(c)) + r"(?![\w])", text)]

    text = norm(value)
    found = named_in(text)
    # A choice contained in a longer found choice ('supported' in 'not supported') is not a separate match.
    found = [c for c in found if not any(o != c and norm(c) in norm(o) for o in found)]
    if len(found) > 1:
        # A reply that names its choice and then explains ("Output B follows the instruction
        # better by providing a ...") names the others only in passing: the choice alone among
        # the first three words is the answer.
        found = [c for c in named_in(" ".join(text.split()[:3])) if c in found]
    if len(found) == 1:
        return found[0]
    raise ParseError(f"Field '{f.name}' must be one of {list(f.choices)}, got {value!r}.", raw)
