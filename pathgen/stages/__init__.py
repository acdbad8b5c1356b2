"""Caption stages: describe -> degrade -> revise -> summarize.

Each stage is ``format_*`` (inputs -> ChatRequest, pure), a call through any
:class:`~pathgen.llm.base.LLMClient`, and ``parse_*`` (text -> cleaned output, pure).
``run_*`` runners return a :class:`StageOutput` with full provenance.
"""

from pathgen.stages.degrade import format_degrade_llm, parse_degrade_llm, run_degrade
from pathgen.stages.degrade_rules import Degraded, apply_edits, degrade_rules, seed_from_key
from pathgen.stages.describe import DescribeInput, format_describe, parse_describe, run_describe
from pathgen.stages.fuse import format_fuse, fuse_extractive, parse_fuse, run_fuse
from pathgen.stages.output import Parsed, StageOutput, compute_cost
from pathgen.stages.protocols import ClipScorer
from pathgen.stages.recovery import recovery, token_similarity, unchanged_when_correct
from pathgen.stages.revise import format_revise, parse_revise, run_revise
from pathgen.stages.summarize import format_summarize, parse_summarize, run_summarize

__all__ = [
    "ClipScorer",
    "Degraded",
    "DescribeInput",
    "Parsed",
    "StageOutput",
    "apply_edits",
    "compute_cost",
    "degrade_rules",
    "format_degrade_llm",
    "format_describe",
    "format_fuse",
    "format_revise",
    "format_summarize",
    "parse_degrade_llm",
    "fuse_extractive",
    "parse_describe",
    "parse_fuse",
    "parse_revise",
    "parse_summarize",
    "recovery",
    "run_degrade",
    "run_describe",
    "run_fuse",
    "run_revise",
    "run_summarize",
    "seed_from_key",
    "token_similarity",
    "unchanged_when_correct",
]
