"""Pure text helpers shared by the caption stages: sentences, tokens, output cleaning."""

from __future__ import annotations

import json
import re
from typing import Any

from pathgen.errors import BadOutput

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = ("e.g.", "i.e.", "approx.", "vs.", "cf.", "etc.", "Fig.", "fig.")
_TOKEN = re.compile(r"[a-z0-9]+")

_STOPWORDS_TEXT = (
    "a an the of in on at to and or with within by for from is are was were be been being "
    "this that these those there it its as which who whom also some any all both each into "
    "onto than then shows show showing seen noted present identified"
)
#: Words ignored when comparing the content of two sentences.
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_LEADING_BOILERPLATE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|great|here\s+is|here's|below\s+is)"
    r"[^\n.:!]*[.:!]\s*",
    re.IGNORECASE,
)
_TRAILING_BOILERPLATE = re.compile(
    r"(?:\s*(?:let me know|i hope this|feel free to|if you (?:need|have|would))[^\n]*)+\s*$",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^\s{0,3}(?:#{1,6}\s.*|[A-Z][A-Za-z /&-]{0,40}:\s*)$")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+")
_REFUSAL = re.compile(
    r"\b(?:i\s+(?:cannot|can\s*not|can't|am\s+unable|'m\s+unable|am\s+not\s+able|won't)|"
    r"i'm\s+(?:sorry|unable|not\s+able)|i\s+apologi[sz]e|as\s+an\s+ai\b|"
    r"unable\s+to\s+(?:provide|analy[sz]e|assist|view|see|interpret)|"
    r"(?:no|not\s+an?)\s+image\s+(?:was\s+)?(?:provided|attached|available))",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(?:caption|summary|description|corrected description)\s*:\s*", re.I)


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (keeps the end punctuation; knows common abbreviations)."""
    flat = " ".join(text.split())
    if not flat:
        return []
    protected = flat
    for i, abbr in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbr, f"\x00{i}\x00")
    parts = _SENTENCE_END.split(protected)
    out = []
    for part in parts:
        for i, abbr in enumerate(_ABBREVIATIONS):
            part = part.replace(f"\x00{i}\x00", abbr)
        if part.strip():
            out.append(part.strip())
    return out


def join_sentences(sentences: list[str]) -> str:
    """Join sentences with single spaces (the inverse of :func:`split_sentences`)."""
    return " ".join(s.strip() for s in sentences if s.strip())


def tokens(text: str) -> list[str]:
    """Normalised word tokens: lowercase ASCII letters/digits; hyphens and punctuation split."""
    return _TOKEN.findall(text.lower().replace("\u2013", "-"))


def content_tokens(text: str) -> set[str]:
    """The set of :func:`tokens` of ``text`` minus :data:`STOPWORDS`."""
    return {t for t in tokens(text) if t not in STOPWORDS}


def check_refusal(text: str, raw: str | None = None) -> None:
    """Raise :class:`BadOutput` when ``text`` reads as a refusal or "I cannot" answer."""
    head = text[:300]
    match = _REFUSAL.search(head)
    if match:
        raise BadOutput(f"the model refused or could not answer ({match.group(0)!r})", raw=raw)


def clean_prose(text: str) -> str:
    """Strip chatty boilerplate, markdown headers, emphasis and bullets; return one paragraph.

    Raises :class:`BadOutput` (with the raw text) when nothing usable is left or the answer
    is a refusal.
    """
    raw = text
    body = text.strip().strip("`").strip()
    if body.lower().startswith(("text\n", "markdown\n")):
        body = body.split("\n", 1)[1]
    for _ in range(3):
        stripped = _LEADING_BOILERPLATE.sub("", body, count=1)
        if stripped == body:
            break
        body = stripped
    lines = []
    for line in body.splitlines():
        if _HEADER_LINE.match(line) or set(line.strip()) <= set("-=*_#"):
            continue
        lines.append(_BULLET.sub("", line).strip())
    body = " ".join(line for line in lines if line)
    body = body.replace("**", "").replace("__", "")
    body = _TRAILING_BOILERPLATE.sub("", body)
    quotes = "\"'\u201c\u201d"
    body = _PREFIX.sub("", body.strip().strip(quotes))
    body = " ".join(body.split()).strip().strip(quotes).strip()
    check_refusal(body or raw, raw=raw)
    if not body:
        raise BadOutput("the model returned no usable text", raw=raw)
    return body


def json_object(text: str, what: str = "answer") -> dict[str, Any]:
    """The first JSON object in a model answer: code fences, prose around it and trailing
    commas are tolerated. Raises :class:`BadOutput` (with the raw text) naming ``what``."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        start, end = cand.find("{"), cand.rfind("}")
        if start < 0 or end <= start:
            continue
        chunk = cand[start : end + 1]
        for attempt in (chunk, re.sub(r",\s*([}\]])", r"\1", chunk)):
            try:
                data = json.loads(attempt)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                return data
    raise BadOutput(f"{what} holds no JSON object", raw=text)
