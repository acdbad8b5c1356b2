"""``pathgen captions search`` and ``pathgen show``: find captions, trace a tile's history."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from pathgen.cli.context import run_async, state

if TYPE_CHECKING:
    from rich.text import Text

    from pathgen.settings import Settings

captions_app = typer.Typer(help="Search and inspect captions.", no_args_is_help=True)
console = Console()


async def _with_session(settings: Settings, fn: Any) -> Any:
    from pathgen.store.engine import make_engine, read_scope

    engine = make_engine(settings.database.url, create=False)
    try:
        async with read_scope(engine) as session:
            return await fn(session)
    finally:
        await engine.dispose()


@captions_app.command("search")
def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help='Words and "quoted phrases"; all must match.'),
    stage: str | None = typer.Option(None, "--stage", help="Only this stage, e.g. summarize."),
    run: str | None = typer.Option(None, "--run", help="Only this run."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many hits."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Full-text search over every caption revision (stemmed English)."""
    from rich.table import Table
    from rich.text import Text

    from pathgen.curation import search_captions

    settings = state(ctx).settings
    hits = run_async(
        lambda: _with_session(
            settings, lambda s: search_captions(s, query, run_id=run, stage=stage, limit=limit)
        )
    )
    if as_json:
        for hit in hits:
            row = {
                "revision_id": hit.revision_id,
                "tile_id": hit.tile_id,
                "run_id": hit.run_id,
                "stage": hit.stage,
                "branch": hit.branch,
                "rank": hit.rank,
                "snippet": hit.snippet_text("[", "]"),
                "text": hit.text,
            }
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    if not hits:
        console.print("no matches", highlight=False)
        return
    table = Table("revision", "tile", "run", "stage", "snippet")
    for hit in hits:
        snippet = Text()
        for part, matched in hit.snippet_parts():
            snippet.append(part, style="bold yellow" if matched else "")
        table.add_row(str(hit.revision_id), str(hit.tile_id), hit.run_id, hit.stage, snippet)
    console.print(table)


def _diff_text(step: Any, plain: bool = False) -> Text:
    """The revision's text as a diff from its parent: insertions green, deletions red struck.

    ``plain`` (no colour, e.g. piped output) marks them ``{+new+}`` and ``[-old-]`` instead.
    """
    from rich.text import Text

    if step.diff is None:
        return Text(step.text)
    out = Text()
    for i, (op, words) in enumerate(step.diff):
        if i:
            out.append(" ")
        if plain and op != "equal":
            words = f"{{+{words}+}}" if op == "insert" else f"[-{words}-]"
        style = {"insert": "green", "delete": "red strike"}.get(op, "")
        out.append(words, style=style)
    return out


def _print_instruct(items: list[dict[str, Any]]) -> None:
    """The instruct items made from a revision, indented under it."""
    from rich.markup import escape

    for item in items:
        verdict = (
            "[green]passed[/green]"
            if item["verify_status"] == "passed"
            else f"[red]FAILED: {escape(item['verify_reason'] or '')}[/red]"
        )
        prompt = item["template_name"] or "-"
        if item["template_hash"]:
            prompt += f"@{item['template_hash'][:8]}"
        console.print(
            f"  [bold]instruct #{item['item_id']}[/bold] {item['kind']}  "
            f"{escape(item['provider'])}/{escape(item['model'])}  prompt {escape(prompt)}  "
            f"tokens {item['input_tokens']}+{item['output_tokens']}  ${item['cost']:.4f}  "
            f"{escape(item['verifier'] or '-')}: {verdict}",
            highlight=False,
        )
        for turn in item["turns"]:
            console.print(f"    Q: {turn['question']}", highlight=False, markup=False)
            console.print(f"    A: {turn['answer']}", highlight=False, markup=False)


def _print_history(history: Any) -> None:
    from rich.markup import escape
    from rich.text import Text

    console.print(
        f"[bold]tile {history.tile_id}[/bold]  {escape(history.slide_path)}  "
        f"x={history.x} y={history.y} size={history.size}  {history.mpp} µm/px  "
        f"{history.tile_px} px  runs: {', '.join(history.run_ids) or '-'}",
        highlight=False,
    )
    for n, chain in enumerate(history.chains, start=1):
        branch = chain[-1].branch if chain else "caption"
        console.rule(f"chain {n} ({branch})")
        for step in chain:
            failed = (
                f"  [red]FAILED: {escape(step.error or '')}[/red]" if step.status != "ok" else ""
            )
            console.print(
                f"[bold]#{step.revision_id}[/bold] {step.stage}  {escape(step.provider)}/"
                f"{escape(step.model)}  prompt {escape(step.prompt)}  tokens "
                f"{step.input_tokens}+{step.output_tokens}  {step.latency_s:.2f} s  "
                f"${step.cost:.4f}{failed}",
                highlight=False,
            )
            console.print(_diff_text(step, plain=console.color_system is None))
            if step.edits:
                console.print(Text(f"edits: {json.dumps(step.edits)}", style="dim"))
            _print_instruct(step.instruct)
    console.rule("reviews")
    if not history.reviews:
        console.print("unreviewed", highlight=False)
    for r in history.reviews:
        note = f" ({r['note']})" if r["note"] else ""
        console.print(
            f"{r['created_at']}  {r['decision']} by {r['reviewer']}  run {r['run_id']}  "
            f"revision {r['revision_id']}{note}",
            highlight=False,
            markup=False,
        )


def show(
    ctx: typer.Context,
    tile: int = typer.Argument(..., help="Tile id."),
    run: str | None = typer.Option(None, "--run", help="Only this run's revisions and reviews."),
    as_json: bool = typer.Option(False, "--json", help="Print the history as JSON."),
) -> None:
    """Show a tile's caption revision chains with word diffs, provenance and reviews, and
    the instruct items under the revision they were made from."""
    from pathgen.curation import tile_history

    settings = state(ctx).settings
    history = run_async(lambda: _with_session(settings, lambda s: tile_history(s, tile, run)))
    if as_json:
        typer.echo(json.dumps(history.to_dict(), ensure_ascii=False, indent=1))
        return
    _print_history(history)


def register(app: typer.Typer) -> None:
    app.add_typer(captions_app, name="captions")
    app.command("show")(show)
