"""Commands that only read the store: show, history, diff, doctor, quality."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline import wording
from pipeline.cli.common import Context, details, handles_errors, write_json
from pipeline.errors import ConfigError, StoreError
from pipeline.exitcodes import Verdict, exit_code


@click.command()
@click.argument("pair_ref")
@click.option("--format", "fmt", type=click.Choice(["md", "markdown", "html", "json"]), default="md", show_default=True,
              help="md (or markdown), html or json.")  # fmt: skip
@click.option("--attempts", is_flag=True, help="List every recorded attempt instead, failed ones included.")
@click.pass_obj
@handles_errors
def show(obj: Context, pair_ref: str, fmt: str, attempts: bool) -> None:
    """Print the stored comparison of a pair without calling a model."""
    ws = obj.open(f"pipeline show {pair_ref}")
    pair = ws.pair(pair_ref, cross_category=True)
    if attempts:
        from pipeline.units import units_of

        rows = [{**row, "unit": unit} for unit in (*units_of(pair), pair.key) for row in ws.store.attempts(unit)]
        sampled = {r["invocation_id"] for r in rows if r["sample"] > 1}
        for row in rows:
            sample = f" (sample {row['sample']})" if row["invocation_id"] in sampled else ""
            click.echo(
                f"{row['created_at']}  {row['unit']}  #{row['number']}{sample} {row['outcome']:<15} "
                f"tokens={row['prompt_tokens']}+{row['completion_tokens']}{details(row)}  "
                f"{row['error'] or problems_text(row['problems'])}"
            )
        return
    current, previous = ws.published(pair)
    rendered = ws.renderer.render(current, frozenset(k for k in ws.store.published_keys() if "," in k), previous)
    click.echo(rendered.files["md" if fmt == "markdown" else fmt], nl=False)


def problems_text(stored: str) -> str:
    """An attempt's stored problems (a JSON list) as the one line a reader wants: "path: message [rule: x]; ..."."""
    import json

    from pipeline.models import Problem

    try:
        found = [Problem(str(p.get("path", "")), str(p.get("message", "")), str(p.get("rule", "")))
                 for p in json.loads(stored) if isinstance(p, dict)]  # fmt: skip
    except (ValueError, TypeError, AttributeError):
        return stored
    if not found:
        return ""
    shown = "; ".join(str(p) for p in found[:3])
    return shown + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")


@click.command()
@click.argument("pair_ref")
@click.pass_obj
@handles_errors
def history(obj: Context, pair_ref: str) -> None:
    """Every generation of a pair: date, model, which inputs changed, overall scores."""
    from pipeline.history import input_changes

    ws = obj.open(f"pipeline history {pair_ref}")
    pair = ws.pair(pair_ref, cross_category=True)
    generations = ws.publisher.history(pair.key)
    if not generations:
        raise StoreError(f"no stored comparison for {pair.key}; run `pipeline run --pair {pair.key}` first")
    from pipeline.scoring import winner, winner_name

    shown = ws.store.publication_order(pair.key)
    parts = ws.store.by_ids([p.generation_id for c in generations for p in c.parts])
    previous = None
    for c in generations:
        won, sa, sb = winner(c.data, pair.category)
        changed = "; ".join(input_changes(previous, c, parts)) if previous else "first generation"
        name = winner_name(pair, won)
        mark = "  [published]" if shown and c.stored_id == shown[-1] else ""
        click.echo(
            f"{c.generated_at}  {c.generation_id}  {c.provider}/{c.model}  overall {sa:.2f}-{sb:.2f} "
            f"({name}){mark}  inputs: {changed}"
        )
        previous = c


@click.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--from", "from_ref", default="previous", show_default=True,
    help="Generation: 'previous' (shown before the published one), 'published', 'latest' (the newest), a date "
         "(YYYY-MM-DD: the one in effect then) or an id prefix.",
)  # fmt: skip
@click.option("--to", "to_ref", default="published", show_default=True, help="Generation, as for --from.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "md", "json"]), default="text",
              show_default=True, help="text, markdown (or md) or json.")  # fmt: skip
@click.option("--threshold", type=float, default=1.0, show_default=True,
              help="Rating moves smaller than this are listed but not material.")  # fmt: skip
@click.pass_obj
@handles_errors
def diff(obj: Context, targets: tuple[str, ...], from_ref: str, to_ref: str, fmt: str, threshold: float) -> None:
    """What changed between two generations of a pair, or between two report .json files.

    Exit codes: 0 no material change, 1 material changes (ask for review), 2 errors.
    """
    import json

    from pipeline import diff as d

    if len(targets) == 2:
        old, new = (d.load_report(Path(t)) for t in targets)
        if old.get("pair") != new.get("pair"):
            raise ConfigError(f"{targets[0]} is the report of {old.get('pair')} and {targets[1]} of {new.get('pair')}; "
                              "diff two reports of the same pair")  # fmt: skip
    elif len(targets) == 1:
        from pipeline.history import FirstGeneration, pick
        from pipeline.report_view import report_json

        ws = obj.open(f"pipeline diff {targets[0]}")
        pair = ws.pair(targets[0], cross_category=True)
        generations = ws.publisher.history(pair.key)
        shown = ws.store.publication_order(pair.key)
        try:
            first, second = pick(generations, from_ref, shown), pick(generations, to_ref, shown)
        except FirstGeneration as exc:
            click.echo(f"{pair.key}: {exc}")
            sys.exit(exit_code(Verdict.DONE))
        # Generations are compared as the model made them: today's overrides belong to neither.
        old, new = (report_json(ws.renderer.view(pair, g, overrides=False)) for g in (first, second))
    else:
        raise click.UsageError("give a pair (a,b), or two report .json files of the same pair (old, then new)")
    result = d.diff_reports(old, new, threshold)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    elif fmt in ("markdown", "md"):
        click.echo(d.render_markdown(result), nl=False)
    else:
        click.echo(d.render_text(result, color=sys.stdout.isatty()), nl=False)
    sys.exit(exit_code(result.verdict))


@click.command()
@click.pass_obj
@handles_errors
def doctor(obj: Context) -> None:
    """Check the store and the reports: migrations, every stored generation, files on disk.

    Exits 0 when everything holds, 1 with a list of what does not.
    """
    from pipeline.doctor import check

    report = check(obj.open("pipeline doctor"))
    for finding in report.findings:
        click.echo(f"{finding.where}: {finding.problem}")
    state = "ok" if report.ok else wording.count(len(report.findings), "problem")
    click.echo(
        f"checked {wording.count(report.checked_generations, 'generation')} and "
        f"{wording.count(report.checked_files, 'report file')}: {state}"
    )
    sys.exit(exit_code(report.verdict))


@click.command()
@click.option("--json", "json_path", help="Write the findings as JSON to this file ('-' for stdout).")
@click.pass_obj
@handles_errors
def quality(obj: Context, json_path: str | None) -> None:
    """How every published report fares: content gates passed, claims supported, weak, unsupported.

    Exits 1 when a report made under the gates fails one (reports made before the gates
    were enforced are listed, not failed), 0 otherwise.
    """

    from pipeline.quality import survey

    ws = obj.open("pipeline quality")
    found = survey([c for c, _ in ws.publisher.pages()], ws.catalogue, ws.renderer.overrides, ws.renderer.caps)
    for e in found.entries:
        mark = "FAIL" if e.quality.fails else ("old " if not e.quality.gated else "ok  ")
        click.echo(f"{mark} {e.pair_key}  {e.generated_at}  {e.model}: {e.quality.line()}")
        for gate in e.quality.failed:
            for problem in e.quality.problems[gate][:3]:
                click.echo(f"       {problem}")
    for line in found.inconsistencies:
        click.echo(f"INCONSISTENT {line}")
    t = found.totals()
    c = t["claims"]
    click.echo(
        f"{wording.count(t['reports'], 'report')}: {t['passing']} pass every gate, {t['failing']} fail one, "
        f"{t['made_before_gates']} made before the gates; claims: {c['supported']} supported "
        f"({100 * t['supported_share']:.0f}%), {c['weak']} weak, {c['unsupported']} unsupported, "
        f"{c['uncited']} uncited; {wording.count(t['inconsistent'], 'subject-dimension')} shown differently on "
        "different pages"
    )
    if json_path:
        write_json(json_path, found.as_dict())
    sys.exit(exit_code(found.verdict))
