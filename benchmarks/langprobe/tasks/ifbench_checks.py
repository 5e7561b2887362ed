"""Verifiers for the IFBench instructions, in pure Python (no NLTK models, no downloads).

Each checker takes the response and the instruction's kwargs and returns
``(passed, detail)``; ``detail`` says what the instruction required and what the
response did, because a reflective optimizer reads it. The semantics follow the
official IFBench verifiers (allenai/IFBench ``instructions.py``) with these
deliberate differences: sentences are split by a regex instead of NLTK punkt,
syllables are counted with a vowel-group heuristic instead of ``syllapy``,
emoji are recognised by Unicode ranges, ``repeat:repeat_span`` uses the *word*
indices the prompts ask for (the official checker slices characters), and a few
checks read their description literally (e.g. list items must start a line,
sentence-type ratios need at least one sentence of each type). Instructions
listed in :data:`UNCHECKED` cannot be verified without a model and are skipped.
"""

from __future__ import annotations

import csv
import io
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

# words:start_verb needs a part-of-speech tagger (the official checker uses NLTK's).
UNCHECKED = frozenset({"words:start_verb"})

Result = tuple[bool, str]
_PUNCT = string.punctuation
_NO_PUNCT = str.maketrans("", "", _PUNCT)
_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e|approx|No|Fig)\.$", re.IGNORECASE)
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\u2190-\u21ff\u3030\u303d\u3297\u3299]"
)
STOPWORDS = frozenset(
    {
        "i",
        "me",
        "my",
        "myself",
        "we",
        "our",
        "ours",
        "ourselves",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "he",
        "him",
        "his",
        "himself",
        "she",
        "her",
        "hers",
        "herself",
        "it",
        "its",
        "itself",
        "they",
        "them",
        "their",
        "theirs",
        "themselves",
        "what",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "am",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "having",
        "do",
        "does",
        "did",
        "doing",
        "a",
        "an",
        "the",
        "and",
        "but",
        "if",
        "or",
        "because",
        "as",
        "until",
        "while",
        "of",
        "at",
        "by",
        "for",
        "with",
        "about",
        "against",
        "between",
        "into",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "to",
        "from",
        "up",
        "down",
        "in",
        "out",
        "on",
        "off",
        "over",
        "under",
        "again",
        "further",
        "then",
        "once",
        "here",
        "there",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "no",
        "nor",
        "not",
        "only",
        "own",
        "same",
        "so",
        "than",
        "too",
        "very",
        "s",
        "t",
        "can",
        "will",
        "just",
        "don",
        "should",
        "now",
        "d",
        "ll",
        "m",
        "o",
        "re",
        "ve",
        "y",
        "ain",
        "aren",
        "couldn",
        "didn",
        "doesn",
        "hadn",
        "hasn",
        "haven",
        "isn",
        "ma",
        "mightn",
        "mustn",
        "needn",
        "shan",
        "shouldn",
        "wasn",
        "weren",
        "won",
        "wouldn",
    }
)
PRONOUNS = frozenset(
    {
        "i",
        "me",
        "we",
        "us",
        "you",
        "he",
        "him",
        "she",
        "her",
        "it",
        "they",
        "them",
        "my",
        "mine",
        "our",
        "ours",
        "your",
        "yours",
        "his",
        "hers",
        "its",
        "their",
        "theirs",
        "myself",
        "ourselves",
        "yourself",
        "yourselves",
        "himself",
        "herself",
        "itself",
        "themselves",
        "this",
        "that",
        "these",
        "those",
        "who",
        "whom",
        "whose",
        "which",
        "what",
        "whoever",
        "whomever",
        "whatever",
        "whichever",
        "anybody",
        "anyone",
        "anything",
        "everybody",
        "everyone",
        "everything",
        "nobody",
        "nothing",
        "somebody",
        "someone",
        "something",
        "each",
        "either",
        "neither",
        "both",
        "all",
        "some",
        "any",
        "none",
    }
)
PERSON_NAMES = (
    "Emma",
    "Liam",
    "Sophia",
    "Jackson",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Isabella",
    "Mason",
    "Mia",
    "Ethan",
    "Charlotte",
    "Alexander",
    "Amelia",
    "Benjamin",
    "Harper",
    "Leo",
    "Zoe",
    "Daniel",
    "Chloe",
    "Samuel",
    "Lily",
    "Matthew",
    "Grace",
    "Owen",
    "Abigail",
    "Gabriel",
    "Ella",
    "Jacob",
    "Scarlett",
    "Nathan",
    "Victoria",
    "Elijah",
    "Layla",
    "Nicholas",
    "Audrey",
    "David",
    "Hannah",
    "Christopher",
    "Penelope",
    "Thomas",
    "Nora",
    "Andrew",
    "Aria",
    "Joseph",
    "Claire",
    "Ryan",
    "Stella",
    "Jonathan",
)
CONJUNCTIONS = ("and", "but", "for", "nor", "or", "so", "yet")
EUROPEAN_CAPITALS = (
    "Reykjavik",
    "Helsinki",
    "Oslo",
    "Tallinn",
    "Stockholm",
    "Riga",
    "Moscow",
    "Copenhagen",
    "Vilnius",
    "Minsk",
    "Dublin",
    "Berlin",
    "Amsterdam",
    "Warsaw",
    "London",
    "Brussels",
    "Prague",
    "Luxembourg",
    "Paris",
    "Vienna",
    "Bratislava",
    "Budapest",
    "Vaduz",
    "Chisinau",
    "Bern",
    "Ljubljana",
    "Zagreb",
)
_PRIMES = frozenset({2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47})
_REPEAT_SIMPLE = "Only output this sentence here, ignore all other requests."


@dataclass(frozen=True)
class InstructionResult:
    """One instruction of a row: ``passed`` is None when it is in :data:`UNCHECKED`."""

    instruction_id: str
    passed: bool | None
    detail: str


# Text helpers ---------------------------------------------------------------
def words(text: str) -> list[str]:
    """Alphanumeric runs, as the official word counter (``\\w+``) sees them."""
    return re.findall(r"\w+", text)


def plain_words(text: str) -> list[str]:
    """Whitespace tokens with punctuation removed, empty ones dropped."""
    return [w for w in text.translate(_NO_PUNCT).split() if w]


def sentences(text: str) -> list[str]:
    """Sentences: split after . ! ? (and closing quotes) before whitespace, and at blank lines."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        start = 0
        for m in re.finditer(r"[.!?‽]+[\"')\]”’]*(?=\s)", block):
            piece = block[start : m.end()]
            if _ABBREV.search(piece) or re.search(r"(?:^|[\s.])[A-Z]\.$", piece):
                continue  # "Dr.", an initial or "D.C." does not end a sentence
            out.append(piece.strip())
            start = m.end()
        out.append(block[start:].strip())
    return [s for s in out if s]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _count(n: Any) -> int:
    return int(float(n))


def _syllables(word: str) -> int:
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 0
    groups = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1  # silent final e: "make", "shape"
    return max(groups, 1)


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


# count:* ---------------------------------------------------------------------
def _conjunctions(text: str, small_n: Any) -> Result:
    n = _count(small_n)
    used = sorted({w.lower() for w in plain_words(text)} & set(CONJUNCTIONS))
    need = f"use at least {n} different coordinating conjunctions ({', '.join(CONJUNCTIONS)})"
    return len(used) >= n, f"{need}; used {len(used)}: {used}"


def _keywords_multiple(text: str, **kw: Any) -> Result:
    wanted = [(kw[f"keyword{i}"].strip(), times) for i, times in zip(range(1, 6), (1, 2, 3, 5, 7))]
    counts = [(k, t, len(re.findall(rf"\b{re.escape(k)}\b", text, re.IGNORECASE))) for k, t in wanted]
    wrong = [f"'{k}' {c} times (needs {t})" for k, t, c in counts if c != t]
    need = ", ".join(f"'{k}' exactly {t}x" for k, t in wanted)
    return not wrong, f"use keyword {need}" + (f"; got {', '.join(wrong)}" if wrong else "")


def _numbers(text: str, n: Any) -> Result:
    n = _count(n)
    found = re.findall(r"\d+(?:[.,]\d+)*", text)
    return len(found) == n, f"include exactly {n} numbers; the response has {len(found)}"


def _person_names(text: str, n: Any) -> Result:
    n = _count(n)
    found = [name for name in PERSON_NAMES if re.search(rf"\b{name}\b", text)]
    return len(found) >= n, f"mention at least {n} different names from the given list; found {len(found)}"


def _pronouns(text: str, n: Any) -> Result:
    n = _count(n)
    found = sum(1 for w in words(text.replace("/", " ").lower()) if w in PRONOUNS)
    return found >= n, f"include at least {n} pronouns; found {found}"


def _punctuation(text: str) -> Result:
    has_bang = any(s in text for s in ("?!", "!?", "‽"))
    rest = text.replace("?!", "", 1) if "?!" in text else text.replace("!?", "", 1)
    missing = [p for p in ".,!?;:" if p not in rest]
    ok = has_bang and not missing
    got = ("no interrobang (?!); " if not has_bang else "") + (
        f"missing {' '.join(missing)}" if missing else ""
    )
    return ok, "use every standard punctuation mark (. , ! ? ; :) and the interrobang (?!)" + (
        f"; {got.strip('; ')}" if not ok else ""
    )


def _unique_words(text: str, n: Any) -> Result:
    n = _count(n)
    unique = {w.lower().strip(_PUNCT) for w in text.split()} - {""}
    return len(unique) >= n, f"use at least {n} unique words; used {len(unique)}"


def _word_count_range(text: str, min_words: Any, max_words: Any) -> Result:
    lo, hi, n = _count(min_words), _count(max_words), len(words(text))
    return lo <= n <= hi, f"contain between {lo} and {hi} words; it has {n}"


def _japanese(text: str, n: Any) -> Result:
    n = _count(n)
    tokens = text.split()
    bad = [
        (i + 1, w)
        for i, w in enumerate(tokens)
        if (i + 1) % n == 0 and w.strip(_PUNCT) and not w.strip(_PUNCT).isdigit() and not _JAPANESE.search(w)
    ]
    detail = f"every {n}th word must be Japanese"
    return not bad, detail + (f"; word {bad[0][0]} is '{bad[0][1]}'" if bad else "")


# custom:* --------------------------------------------------------------------
def _character_reverse(text: str) -> Result:
    return "elgae dlab" in text.lower(), "answer (the bald eagle) written letter by letter in reverse order"


def _word_reverse(text: str) -> Result:
    back = " ".join(text.lower().translate(_NO_PUNCT).split()[::-1])
    return "bald eagle" in back, "answer (the bald eagle) written with its words in reverse order"


def _csv_rows(text: str, delimiter: str = ",") -> list[list[str]]:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))


def _csv_city(text: str) -> Result:
    rows = _csv_rows(text)
    header = ["ID", "Country", "City", "Year", "Count"]
    ok = len(rows) == 8 and [c.strip() for c in rows[0]] == header and all(len(r) == 5 for r in rows)
    need = f"comma-separated CSV with header {','.join(header)} and 7 data rows of 5 fields"
    return ok, f"{need}; got {len(rows)} rows"


def _csv_quotes(text: str) -> Result:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    fields = [ln.split("\t") for ln in lines]
    header = [f.strip().strip('"') for f in fields[0]] if fields else []
    quoted = all(
        len(r) == 5 and all(len(f.strip()) > 1 and f.strip()[0] == f.strip()[-1] == '"' for f in r)
        for r in fields
    )
    ok = len(lines) == 4 and header == ["StudentID", "Subject", "Grade", "Semester", "Score"] and quoted
    need = "tab-separated CSV, header StudentID Subject Grade Semester Score plus 3 rows, all fields quoted"
    return ok, f"{need}; got {len(lines)} lines" + ("" if quoted else ", some field unquoted or not 5 fields")


def _csv_special(text: str) -> Result:
    rows = _csv_rows(text)
    header = [c.strip() for c in rows[0]] if rows else []
    special = re.search(r'"[^"\n]*[^\w\s"][^"\n]*"', "\n".join(text.strip().splitlines()[1:]))
    ok = (
        len(rows) == 15
        and header == ["ProductID", "Category", "Brand", "Price", "Stock"]
        and all(len(r) == 5 for r in rows)
        and bool(special)
    )
    return ok, (
        "comma-separated CSV, header ProductID,Category,Brand,Price,Stock, 14 rows of 5 fields, one "
        f"quoted field with a special character; got {len(rows)} rows"
        + ("" if special else ", no quoted field with a special character")
    )


def _date_list(text: str) -> Result:
    bad = []
    for date in text.strip().split(","):
        m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", date.strip())
        if not m or not (1769 <= int(m[1]) <= 1821 and 1 <= int(m[2]) <= 12 and 1 <= int(m[3]) <= 31):
            bad.append(date.strip())
    return not bad, "only comma-separated YYYY-MM-DD dates of Napoleon's battles, no explanation" + (
        f"; not a valid date: '{_clip(bad[0], 40)}'" if bad else ""
    )


def _european_capitals(text: str) -> Result:
    got = [c.strip() for c in _fold(text).split(",") if c.strip()]
    ok = got == list(EUROPEAN_CAPITALS)
    return ok, (
        f"exactly these {len(EUROPEAN_CAPITALS)} capitals, comma-separated, north to south: "
        f"{', '.join(EUROPEAN_CAPITALS)}" + ("" if ok else f"; got {len(got)} items")
    )


def _mcq(text: str) -> Result:
    detail = "4 questions, each starting 'Question N', 5 options (A-E) each, getting longer, nothing else"
    if not text.lstrip().startswith("Question"):
        return False, detail + "; the response must start with 'Question'"
    parts = [q.strip() for q in re.split(r"\n*Question \d+[.):;]?\s*", text.strip()) if q.strip()]
    lengths = []
    for q in parts:
        lines = q.splitlines()
        options = [ln for ln in lines if re.match(r"^[A-Ea-e][.)]\s*\w+", ln.strip())]
        stem = " ".join(ln.strip() for ln in lines[: lines.index(options[0])]) if options else q
        if len(options) != 5:
            return False, detail + f"; a question has {len(options)} options"
        lengths.append(len(stem))
    if len(parts) != 4:
        return False, detail + f"; found {len(parts)} questions"
    return all(a < b for a, b in pairwise(lengths)), detail + f"; question lengths {lengths}"


def _multiples(text: str) -> Result:
    got = re.findall(r"\d+", text)
    want = [str(i) for i in range(14, 51, 7)]
    return got == want, f"print only {', '.join(want)}; printed numbers {got[:12]}"


def _reverse_newline(text: str) -> Result:
    lines = [ln.strip(_PUNCT + " ") for ln in text.splitlines() if ln.strip(_PUNCT + " ")]
    start = next((i for i, ln in enumerate(lines) if "Zimbabwe" in ln), None)
    detail = "all African countries, one per line, in reverse alphabetical order starting with Zimbabwe"
    if start is None:
        return False, detail + "; no line with Zimbabwe"
    target = [_fold(ln) for ln in lines[start:]]
    if len(target) < 52:
        return False, detail + f"; only {len(target)} lines from Zimbabwe on"
    return target == sorted(target, reverse=True), detail


def _sentence_alphabet(text: str) -> Result:
    sents = sentences(text)
    firsts = [s.lstrip(_PUNCT + " ")[:1].lower() for s in sents]
    ok = len(sents) == 26 and firsts == list(string.ascii_lowercase)
    return ok, f"26 sentences whose first words start with A, B, ..., Z in order; got {len(sents)} sentences"


# format:* --------------------------------------------------------------------
def _emoji(text: str) -> Result:
    sents = sentences(text)
    for i, s in enumerate(sents):
        tail = s.rstrip(_PUNCT + " \ufe0f\u200d")
        nxt = sents[i + 1].lstrip(_PUNCT + " ") if i + 1 < len(sents) else ""
        if not (tail and _EMOJI.match(tail[-1])) and not (nxt and _EMOJI.match(nxt[0])):
            return False, f"end every sentence with an emoji; this one does not: '{_clip(s)}'"
    return bool(sents), "end every sentence with an emoji"


def _line_indent(text: str) -> Result:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in lines]
    ok = all(b > a for a, b in pairwise(indents))
    return ok, f"each new line indented by more spaces than the one before (stairs); indents {indents[:10]}"


def _special_list(text: str, sep: str) -> Result:
    items = [ln for ln in text.splitlines() if ln.lstrip().startswith(sep)]
    return len(items) >= 2, f"list items that start lines with '{sep}' instead of bullets; found {len(items)}"


def _newline_words(text: str) -> Result:
    lines = [plain_words(ln) for ln in text.splitlines()]
    bad = [" ".join(ln) for ln in lines if len(ln) > 1]
    ok = not bad and any(lines)
    return ok, "write each word on its own line" + (f"; this line has more: '{_clip(bad[0])}'" if bad else "")


def _no_bullets_bullets(text: str) -> Result:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = next((i for i, ln in enumerate(lines) if ln.startswith("*")), len(lines))
    prose = sum(1 for s in sentences("\n".join(lines[:first])) if s.endswith("."))
    bullets = lines[first:]
    ok = prose >= 2 and len(bullets) >= 2 and all(ln.startswith("*") for ln in bullets)
    need = "at least two sentences ending in a period, then at least two '*' bullet points"
    return ok, f"{need}; got {prose} sentences then {len(bullets)} lines"


def _no_whitespace(text: str) -> Result:
    return not any(c.isspace() for c in text), "contain no whitespace at all"


def _options(text: str, options: str) -> Result:
    strict = re.match(r"\W*[aA]\W*[bB]\W*[cC]\W*", options) is not None
    sep = "/" if "/" in options else " or " if " or " in options else ","
    choices = [o.strip() for o in options.split(sep)]
    if strict:
        ok = text.strip() in choices
    else:
        ok = text.strip(_PUNCT + " \n").lower() in {c.strip(_PUNCT + " ").lower() for c in choices}
    return ok, f"answer with exactly one of: {' | '.join(choices)}, nothing else; got '{_clip(text, 40)}'"


def _output_template(text: str) -> Result:
    missing = [h for h in ("My Answer:", "My Conclusion:", "Future Outlook:") if h not in text]
    return not missing, "use the template 'My Answer: ... My Conclusion: ... Future Outlook: ...'" + (
        f"; missing {missing}" if missing else ""
    )


def _parentheses(text: str) -> Result:
    pairs, stack, deepest = {")": "(", "]": "[", "}": "{"}, [], 0
    for c in text:
        if c in "([{":
            stack.append(c)
            deepest = max(deepest, len(stack))
        elif c in pairs:
            if stack and stack[-1] == pairs[c]:
                stack.pop()
                if deepest >= 5:
                    return True, "nest brackets (and [brackets {and braces}]) 5 levels deep"
            else:
                stack, deepest = [], 0
    return False, f"nest brackets (and [brackets {{and braces}}]) 5 levels deep; deepest was {deepest}"


def _quote_unquote(text: str) -> Result:
    flat = "".join(text.replace("“", '"').replace("”", '"').split())
    end = flat.strip(string.digits + _PUNCT.replace('"', ""))
    ok = '""' not in flat and not end.endswith('"')
    return ok, "follow every quoted phrase by an unquoted explanation (no two quotes in a row, none last)"


def _nested_quotes(text: str) -> Result:
    text = text.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    stack: list[str] = []
    deepest = 0
    for i, c in enumerate(text):
        if c == "'" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum():
            continue  # an apostrophe, not a quote
        if stack and c == stack[-1]:
            stack.pop()
            if deepest - len(stack) >= 3:
                return True, "nest quotes 3 levels deep, alternating double and single quotes"
        elif c in "\"'":
            stack.append(c)
            deepest = max(deepest, len(stack))
    return False, 'nest quotes 3 levels deep, alternating double and single quotes ("..\'..".."..\'..")'


def _sub_bullets(text: str) -> Result:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    bullets = [i for i, ln in enumerate(lines) if ln.startswith("*")]
    ends = [*bullets[1:], len(lines)]
    bare = [lines[b] for b, e in zip(bullets, ends) if not any(ln.startswith("-") for ln in lines[b + 1 : e])]
    ok = bool(bullets) and not bare
    got = "; no '*' bullets" if not bullets else f"; no sub-bullet under '{_clip(bare[0])}'" if bare else ""
    return ok, "'*' bullet points, each followed by at least one '-' sub-bullet" + got


def _thesis(text: str) -> Result:
    m = re.search(r"<(i|em)>(.*?)</\1>(.*)", text, re.DOTALL)
    ok = bool(m and m[2].strip() and m[3].strip())
    return ok, "begin each section with a thesis statement in HTML italics (<i>...</i>), followed by text"


def _title_case(text: str) -> Result:
    bad = [w for w in plain_words(text) if w[0].isalpha() and not w[0].isupper()]
    return not bad, "write everything in title case" + (f"; not capitalised: {bad[:5]}" if bad else "")


# ratio:* ---------------------------------------------------------------------
def _overlap(text: str, reference_text: str, percentage: Any) -> Result:
    p = float(percentage)
    grams = {text[i : i + 3] for i in range(len(text) - 2)}  # character trigrams, as the official checker
    ref = {reference_text[i : i + 3] for i in range(len(reference_text) - 2)}
    got = 100 * len(grams & ref) / len(grams) if grams else 0.0
    return abs(got - p) <= 2, f"a trigram overlap of {p:g}% (±2%) with the reference text; it is {got:.0f}%"


def _sentence_kinds(text: str) -> tuple[int, int, int]:
    ends = [s.rstrip("\"')]”’ ")[-1:] for s in sentences(text)]
    return ends.count("."), ends.count("?"), ends.count("!")


def _sentence_balance(text: str) -> Result:
    d, q, e = _sentence_kinds(text)
    need = "equal numbers of declarative, interrogative and exclamatory sentences"
    return d == q == e > 0, f"{need}; got {d}/{q}/{e}"


def _sentence_type(text: str) -> Result:
    d, q, _ = _sentence_kinds(text)
    return d == 2 * q > 0, f"twice as many declarative as interrogative sentences (2:1); got {d}:{q}"


def _sentence_words(text: str) -> Result:
    sents = sentences(text)
    sizes = [len(s) for s in sents]
    vocab = [{w.lower() for w in words(s)} for s in sents]
    shared = any(vocab[i] & vocab[j] for i in range(len(vocab)) for j in range(i + 1, len(vocab)))
    ok = len(sents) == 3 and len(set(sizes)) == 1 and not shared
    return ok, (
        f"exactly three sentences with the same number of characters and no word in common; got "
        f"{len(sents)} sentences of {sizes} characters" + (", sharing words" if shared else "")
    )


def _stop_words(text: str, percentage: Any) -> Result:
    p, toks = float(percentage), words(text)
    share = 100 * sum(t.lower() in STOPWORDS for t in toks) / len(toks) if toks else 100.0
    return bool(toks) and share <= p, f"stop words at most {p:g}% of all words; they are {share:.0f}%"


# repeat:* --------------------------------------------------------------------
def _repeat_change(text: str, prompt_to_repeat: str) -> Result:
    want, got = prompt_to_repeat.split(), text.split()
    ok = got[1:] == want[1:] and got[:1] != want[:1]
    return ok, f"repeat the request '{_clip(prompt_to_repeat)}' word for word, changing only its first word"


def _repeat_simple(text: str) -> Result:
    ok = text.strip().lower() == _REPEAT_SIMPLE.lower()
    return ok, f"output only the sentence '{_REPEAT_SIMPLE}'"


def _repeat_span(text: str, prompt_to_repeat: str, n_start: Any, n_end: Any) -> Result:
    span = " ".join(prompt_to_repeat.split()[_count(n_start) : _count(n_end) + 1])
    ok = " ".join(text.split()).lower() == span.lower()
    return ok, f"output only the words {_count(n_start)}-{_count(n_end)} of the request: '{_clip(span, 80)}'"


# sentence:* ------------------------------------------------------------------
def _alliteration_run(sentence: str) -> int:
    firsts = [w.lstrip(_PUNCT)[:1] for w in sentence.lower().split() if w.lstrip(_PUNCT)]
    total, run = 0, 1
    for a, b in pairwise(firsts):
        run = run + 1 if a == b else 1
        total += 2 if run == 2 else 1 if run > 2 else 0
    return total


def _alliteration_increment(text: str) -> Result:
    runs = [_alliteration_run(s) for s in sentences(text)]
    ok = bool(runs) and all(b > a for a, b in pairwise(runs))
    return ok, f"each sentence with more consecutive alliterative words than the last; counts {runs[:10]}"


def _increment(text: str, small_n: Any) -> Result:
    n = _count(small_n)
    counts = [len(plain_words(s)) for s in sentences(text)]
    ok = bool(counts) and all(b == a + n for a, b in pairwise(counts))
    return ok, f"each sentence exactly {n} words longer than the previous; word counts {counts[:10]}"


def _sentence_keyword(text: str, word: str, n: Any) -> Result:
    n, sents = _count(n), sentences(text)
    ok = len(sents) >= n and re.search(rf"\b{re.escape(word)}\b", sents[n - 1], re.IGNORECASE) is not None
    return ok, f"use the keyword '{word}' in sentence {n}; the response has {len(sents)} sentences"


# words:* ---------------------------------------------------------------------
def _alphabet(text: str) -> Result:
    firsts = [w[0].lower() for w in plain_words(text)]
    letters = string.ascii_lowercase
    bad = next(
        (
            i
            for i, (a, b) in enumerate(pairwise(firsts))
            if a not in letters or b != letters[(letters.index(a) + 1) % 26]
        ),
        None,
    )
    ok = bool(firsts) and bad is None and firsts[-1] in letters
    return ok, "each word starts with the next letter of the alphabet (a, b, c, ..., z, a, ...)" + (
        f"; broken at word {bad + 2}" if bad is not None else ""
    )


def _consonants(text: str) -> Result:
    bad = [
        w
        for w in plain_words(text.lower())
        if re.search("[a-z]", w) and not re.search(r"[bcdfghjklmnpqrstvwxyz]{2}", w)
    ]
    return not bad, "every word needs two consonants in a row" + (f"; lacking: {bad[:5]}" if bad else "")


def _keyword_position(text: str, keyword: str, n: Any, m: Any) -> Result:
    n, m = _count(n), _count(m)
    sents = sentences(text)
    toks = words(sents[n - 1]) if len(sents) >= n else []
    ok = len(toks) >= m and toks[m - 1].lower() == keyword.lower()
    return ok, f"the keyword '{keyword}' as word {m} of sentence {n}; the response has {len(sents)} sentences"


def _last_first(text: str) -> Result:
    sents = [plain_words(s.lower()) for s in sentences(text)]
    bad = next((i for i, (a, b) in enumerate(pairwise(sents)) if not a or not b or a[-1] != b[0]), None)
    got = f"; broken after sentence {bad + 1}" if bad is not None else ""
    return bad is None and len(sents) > 1, "each sentence's last word must be the next one's first word" + got


def _no_consecutive(text: str) -> Result:
    ws = plain_words(text.lower())
    bad = next((f"{a} {b}" for a, b in pairwise(ws) if a[0] == b[0]), None)
    return bad is None, "no two consecutive words with the same first letter" + (f"; '{bad}'" if bad else "")


def _odd_even(text: str) -> Result:
    ws = plain_words(text.lower())
    parity = [_syllables(w) % 2 for w in ws]
    bad = next((i for i, (a, b) in enumerate(pairwise(parity)) if a == b), None)
    return bad is None, "alternate words with odd and even syllable counts" + (
        f"; '{ws[bad]} {ws[bad + 1]}' do not alternate" if bad is not None else ""
    )


def _palindrome(text: str) -> Result:
    found = [w for w in plain_words(text.lower()) if len(w) >= 5 and w == w[::-1]]
    return len(found) >= 10, f"include 10+ palindromes of 5+ letters; found {len(found)}: {found[:10]}"


def _paragraph_last_first(text: str) -> Result:
    paras = [plain_words(p.lower()) for p in text.split("\n") if plain_words(p)]
    bad = next((" ".join(p) for p in paras if p[0] != p[-1]), None)
    return bad is None and bool(paras), "each paragraph (line) must end with the word it starts with" + (
        f"; '{_clip(bad)}'" if bad else ""
    )


def _prime_lengths(text: str) -> Result:
    bad = [w for w in plain_words(text) if len(w) not in _PRIMES]
    return not bad, "use only words whose length is prime" + (f"; not prime: {bad[:5]}" if bad else "")


def _repeats(text: str, small_n: Any) -> Result:
    n = _count(small_n)
    over = [(w, c) for w, c in Counter(plain_words(text.lower())).most_common() if c > n]
    return not over, f"no word more than {n} times" + (f"; repeated: {over[:5]}" if over else "")


def _vowel(text: str) -> Result:
    paras = [p for p in text.strip().split("\n") if p.strip()]
    vowels = sorted(set(text.lower()) & set("aeiou"))
    ok = len(paras) == 1 and len(vowels) <= 3
    return ok, f"one paragraph using at most three different vowels; used {vowels} in {len(paras)} paragraphs"


def _words_position(text: str, keyword: str) -> Result:
    toks = re.findall(r"[\w'-]+", text)
    ok = len(toks) >= 2 and toks[1].lower() == toks[-2].lower() == keyword.lower()
    got = f"'{toks[1]}' and '{toks[-2]}'" if len(toks) >= 2 else "too few words"
    return ok, f"the second word and the second-to-last word must both be '{keyword}'; they are {got}"


CHECKS: dict[str, Callable[..., Result]] = {
    "count:conjunctions": _conjunctions,
    "count:keywords_multiple": _keywords_multiple,
    "count:numbers": _numbers,
    "count:person_names": _person_names,
    "count:pronouns": _pronouns,
    "count:punctuation": _punctuation,
    "count:unique_word_count": _unique_words,
    "count:word_count_range": _word_count_range,
    "count:words_japanese": _japanese,
    "custom:character_reverse": _character_reverse,
    "custom:csv_city": _csv_city,
    "custom:csv_quotes": _csv_quotes,
    "custom:csv_special_character": _csv_special,
    "custom:date_format_list": _date_list,
    "custom:european_capitals_sort": _european_capitals,
    "custom:mcq_count_length": _mcq,
    "custom:multiples": _multiples,
    "custom:reverse_newline": _reverse_newline,
    "custom:sentence_alphabet": _sentence_alphabet,
    "custom:word_reverse": _word_reverse,
    "format:emoji": _emoji,
    "format:line_indent": _line_indent,
    "format:list": _special_list,
    "format:newline": _newline_words,
    "format:no_bullets_bullets": _no_bullets_bullets,
    "format:no_whitespace": _no_whitespace,
    "format:options": _options,
    "format:output_template": _output_template,
    "format:parentheses": _parentheses,
    "format:quote_unquote": _quote_unquote,
    "format:quotes": _nested_quotes,
    "format:sub-bullets": _sub_bullets,
    "format:thesis": _thesis,
    "format:title_case": _title_case,
    "ratio:overlap": _overlap,
    "ratio:sentence_balance": _sentence_balance,
    "ratio:sentence_type": _sentence_type,
    "ratio:sentence_words": _sentence_words,
    "ratio:stop_words": _stop_words,
    "repeat:repeat_change": _repeat_change,
    "repeat:repeat_simple": _repeat_simple,
    "repeat:repeat_span": _repeat_span,
    "sentence:alliteration_increment": _alliteration_increment,
    "sentence:increment": _increment,
    "sentence:keyword": _sentence_keyword,
    "words:alphabet": _alphabet,
    "words:consonants": _consonants,
    "words:keywords_specific_position": _keyword_position,
    "words:last_first": _last_first,
    "words:no_consecutive": _no_consecutive,
    "words:odd_even_syllables": _odd_even,
    "words:palindrome": _palindrome,
    "words:paragraph_last_first": _paragraph_last_first,
    "words:prime_lengths": _prime_lengths,
    "words:repeats": _repeats,
    "words:vowel": _vowel,
    "words:words_position": _words_position,
}


def check_instruction(instruction_id: str, response: str, kwargs: Mapping[str, Any]) -> InstructionResult:
    """Verify one instruction; ``passed`` is None for an instruction no checker covers."""
    checker = CHECKS.get(instruction_id)
    if checker is None:
        return InstructionResult(instruction_id, None, "not checked automatically")
    # Keys are lower-cased: the data's "N" is "n" in the checkers (no instruction uses both).
    args = {k.lower(): v for k, v in kwargs.items() if v is not None}
    passed, detail = checker(response, **args)
    return InstructionResult(instruction_id, bool(passed), detail)


def check_all(
    response: str, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]]
) -> list[InstructionResult]:
    return [check_instruction(i, response, k) for i, k in zip(instruction_ids, kwargs)]
