"""Full-text search over caption revisions (SQLite FTS5 or Postgres text search).

The user's query is never handed to the search engine's own syntax: it is split into
words (``\\w+``) and double-quoted phrases, and every piece becomes a quoted phrase
(all pieces must match), so quotes, operators, ``*``, ``-`` or markup in a query cannot
break the query or reach SQL; the phrase string itself is a bound parameter.

Snippets mark matched words with :data:`MARK_START` / :data:`MARK_END`; use
:meth:`CaptionHit.snippet_parts` to render them (escape the text for HTML).

Example::

    async with read_scope(engine) as session:
        hits = await search_captions(session, "necrosis", stage="summarize", limit=10)
    for hit in hits:
        print(hit.revision_id, hit.snippet_text("[", "]"))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MARK_START = "\x02"
MARK_END = "\x03"
SNIPPET_TOKENS = 24
_PHRASE = re.compile(r'"([^"]*)"?')
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class CaptionHit:
    """One matching revision; ``rank`` is higher for better matches."""

    revision_id: int
    tile_id: int
    run_id: str
    stage: str
    text: str
    snippet: str
    rank: float
    branch: str = "caption"

    def snippet_parts(self) -> list[tuple[str, bool]]:
        """The snippet as ``(text, is_match)`` pieces, in order."""
        parts: list[tuple[str, bool]] = []
        for i, chunk in enumerate(re.split(f"[{MARK_START}{MARK_END}]", self.snippet)):
            if chunk:
                parts.append((chunk, i % 2 == 1))
        return parts

    def snippet_text(self, start: str = "", end: str = "") -> str:
        """The snippet with matches wrapped in ``start`` / ``end`` (plain text by default)."""
        return "".join(f"{start}{t}{end}" if hit else t for t, hit in self.snippet_parts())


def query_phrases(query: str) -> list[list[str]]:
    """Split a user query into phrases of words: ``'a "b c" d'`` -> ``[[a], [b, c], [d]]``.

    Text inside double quotes is one phrase (an unclosed quote runs to the end); every
    other word is a phrase of its own. Punctuation and operators are dropped.
    """
    phrases: list[list[str]] = []
    pos = 0
    for match in _PHRASE.finditer(query):
        phrases.extend([w] for w in _WORD.findall(query[pos : match.start()]))
        words = _WORD.findall(match.group(1))
        if words:
            phrases.append(words)
        pos = match.end()
    phrases.extend([w] for w in _WORD.findall(query[pos:]))
    return phrases


_SYMBOLS = re.compile(r"[*()^:+]")
_OPERATORS = re.compile(r"\b(?:NEAR|AND|OR|NOT)\b")


def query_notice(query: str) -> str | None:
    """What a search box user should be told about ``query``, or ``None``.

    Search matches words and "quoted phrases" only: FTS operators (``*``, ``NEAR(``,
    ``AND``/``OR``/``NOT``, parentheses, column filters) are not syntax here, and a
    query with no words finds nothing.

    >>> query_notice('"')
    'the query has no words to search for: type words, or a "quoted phrase"'
    """
    if not query_phrases(query):
        return 'the query has no words to search for: type words, or a "quoted phrase"'
    notes = []
    ignored = sorted(set(_SYMBOLS.findall(query)))
    if query.count('"') % 2:
        ignored.append('an unclosed "')
    if ignored:
        notes.append(f"ignored {' '.join(ignored)} (not search syntax here)")
    words = sorted(set(_OPERATORS.findall(query)))
    if words:
        notes.append(f"searched {', '.join(words)} as plain words")
    if not notes:
        return None
    return "; ".join(notes) + ': every word and "quoted phrase" must appear (stemmed)'


def _quoted(phrases: list[list[str]]) -> str:
    # Words hold only \w characters; doubling quotes is a second line of defence.
    return " ".join('"' + " ".join(words).replace('"', '""') + '"' for words in phrases)


def _filters(run_id: str | None, stage: str | None) -> str:
    clauses = ""
    if run_id is not None:
        clauses += " AND r.run_id = :run_id"
    if stage is not None:
        clauses += " AND r.stage = :stage"
    return clauses


_SQLITE = """
SELECT r.id, r.tile_id, r.run_id, r.stage, r.branch, r.text,
       snippet(caption_search, 0, :mark_start, :mark_end, '…', :tokens) AS snippet,
       -bm25(caption_search) AS rank
FROM caption_search JOIN caption_revisions AS r ON r.id = caption_search.rowid
WHERE caption_search MATCH :match{filters}
ORDER BY rank DESC, r.id
LIMIT :limit
"""

_POSTGRES = """
SELECT r.id, r.tile_id, r.run_id, r.stage, r.branch, r.text,
       ts_headline('english', r.text, q.query, :headline) AS snippet,
       ts_rank(to_tsvector('english', r.text), q.query) AS rank
FROM caption_revisions AS r, websearch_to_tsquery('english', :match) AS q(query)
WHERE to_tsvector('english', r.text) @@ q.query{filters}
ORDER BY rank DESC, r.id
LIMIT :limit
"""


async def search_captions(
    session: AsyncSession,
    query: str,
    *,
    run_id: str | None = None,
    stage: str | None = None,
    limit: int = 50,
) -> list[CaptionHit]:
    """Revisions whose text matches every word / quoted phrase of ``query``, best first.

    Matching is stemmed English (``vessel`` finds ``vessels``); a query
    with no words returns no hits.
    """
    phrases = query_phrases(query)
    if not phrases or limit <= 0:
        return []
    params: dict[str, object] = {
        "match": _quoted(phrases),
        "limit": int(limit),
        "run_id": run_id,
        "stage": stage,
    }
    if session.get_bind().dialect.name == "sqlite":
        sql = _SQLITE.format(filters=_filters(run_id, stage))
        params.update(mark_start=MARK_START, mark_end=MARK_END, tokens=SNIPPET_TOKENS)
    else:
        sql = _POSTGRES.format(filters=_filters(run_id, stage))
        params["headline"] = (
            f'StartSel="{MARK_START}", StopSel="{MARK_END}", MaxWords={SNIPPET_TOKENS}, '
            "MinWords=8, MaxFragments=2"
        )
    params = {k: v for k, v in params.items() if v is not None}
    rows = (await session.execute(text(sql), params)).all()
    return [
        CaptionHit(
            revision_id=row.id,
            tile_id=row.tile_id,
            run_id=row.run_id,
            stage=row.stage,
            text=row.text,
            snippet=row.snippet or "",
            rank=float(row.rank or 0.0),
            branch=row.branch,
        )
        for row in rows
    ]
