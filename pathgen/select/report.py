"""Turn a free-text pathology report into finding sentences used as retrieval prompts.

Headers, patient and specimen data, dates, ids, signatures and very short fragments are
dropped; the rest is split at sentence ends, semicolons and bullets. Sections that do not
describe what a tile can show (specimen, clinical history, gross description, patient
data) are skipped whole.

Example::

    prompts = report_prompts(report_text, slide_key="case-001")
    [p.text for p in prompts]   # ["Sections show invasive ductal carcinoma, grade 2.", ...]
"""

from __future__ import annotations

import re

from pathgen.promptlib import RetrievalPrompt

MIN_WORDS = 3
MIN_CHARS = 12

_SKIP_SECTIONS = (
    "specimen",
    "clinical",
    "history",
    "gross",
    "patient",
    "procedure",
    "accession",
    "received",
    "requesting",
    "physician",
    "surgeon",
    "pathologist",
    "signed",
    "date",
    "name",
    "mrn",
    "dob",
    "case",
    "report",
    "sex",
    "age",
    "id",
)
_LABEL = re.compile(r"^\s*([A-Za-z][A-Za-z #/&()'-]{1,40}?)\s*:\s*(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*•·▪]+|\(?[0-9]{1,2}[.)]|\(?[A-Za-z][.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_DATE = re.compile(
    r"\b(?:\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}|"
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4})\b",
    re.IGNORECASE,
)
_ID = re.compile(
    r"\b[A-Z]{1,4}-?\d{2}-\d{3,}\b|\b(?:MRN|Accession|Case)\s*#?\s*[:#]?\s*\S*\d", re.I
)
_SIGNATURE = re.compile(
    r"(electronically signed|signed out|signed by|verified by|reported by|dictated by|"
    r"transcribed by|\bm\.?d\.?\b|\bmd\b|\bphd\b|\bfrcpath\b|\bpage \d)",
    re.IGNORECASE,
)


_KEEP_SECTIONS = (
    "diagnosis",
    "diagnoses",
    "microscopic",
    "microscopy",
    "findings",
    "impression",
    "comment",
    "comments",
    "note",
    "addendum",
    "summary",
    "synoptic",
    "description",
    "final",
)


def _section_state(label: str) -> bool | None:
    """True: skip the section; False: keep it; None: not a section header (a finding)."""
    words = re.findall(r"[a-z]+", label.lower())
    if any(w in _KEEP_SECTIONS for w in words) and not any(w == "gross" for w in words):
        return False
    if any(w in _SKIP_SECTIONS for w in words):
        return True
    return None


def _clean(fragment: str) -> str | None:
    text = _BULLET.sub("", fragment).strip(" \t-–—:;,")
    text = " ".join(text.split())
    if not text or _SIGNATURE.search(text) or _ID.search(text):
        return None
    if _DATE.search(text) and len(_DATE.sub("", text).split()) < MIN_WORDS + 1:
        return None
    letters = sum(ch.isalpha() for ch in text)
    if len(text.split()) < MIN_WORDS or len(text) < MIN_CHARS or letters < 0.5 * len(text):
        return None
    if text.isupper():  # shouted lines ("INVASIVE CARCINOMA PRESENT")
        text = text.capitalize()
    return text[0].upper() + text[1:]


def report_sentences(text: str) -> list[str]:
    """Finding sentences of a report, in order, without duplicates."""
    out: list[str] = []
    seen: set[str] = set()
    skipping = False
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        match = _LABEL.match(line)
        state = _section_state(match.group(1)) if match else None
        if match and state is not None:
            skipping = state
            line = match.group(2)
            if not line or skipping:
                continue
        elif line.isupper() and len(line.split()) <= 4:  # bare header ("MICROSCOPIC")
            skipping = bool(_section_state(line))
            continue
        if skipping:
            continue
        for part in re.split(r";|\s[•▪]\s", line):
            for sentence in _SENTENCE_END.split(part):
                cleaned = _clean(sentence)
                if cleaned and cleaned.lower() not in seen:
                    seen.add(cleaned.lower())
                    out.append(cleaned)
    return out


def report_prompts(text: str, slide_key: str) -> list[RetrievalPrompt]:
    """One ``source="report"`` prompt per finding sentence; ids ``report:<slide>:<n>``."""
    return [
        RetrievalPrompt(id=f"report:{slide_key}:{n}", source="report", text=sentence)
        for n, sentence in enumerate(report_sentences(text))
    ]
