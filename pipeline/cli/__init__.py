"""Command line: commands parse their arguments, call one library function and print.

Errors are caught once (`common.handles_errors`) and every exit code comes from
`pipeline.exitcodes.exit_code`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from pipeline import wording
from pipeline.cli.batch import batch, runs
from pipeline.cli.common import Context, handles_errors, log_to_stderr, rel, stop_on_signals
from pipeline.cli.reading import diff, doctor, history, quality, show
from pipeline.errors import InterruptedRun
from pipeline.exitcodes import ExitCode, exit_code
from pipeline.settings import MAX_SAMPLES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    envvar="PIPELINE_WORKSPACE",
    help="Workspace folder (default: the current folder, or the nearest one above it with config/).",
)
@click.option("--store", help="DuckDB store file (default: .pipeline/store.duckdb in the workspace).")
@click.option("-v", "--verbose", is_flag=True, help="Log what each stage does.")
@click.version_option(package_name="comparison-pipeline")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, store: str | None, verbose: bool) -> None:
    """Generate validated, cached, dated "X vs Y" comparison reports with an LLM."""
    log_to_stderr(logging.INFO if verbose else logging.WARNING)
    ctx.obj = Context(workspace, store)


@cli.command("list")
@click.pass_obj
@handles_errors
def list_cmd(obj: Context) -> None:
    """List the catalogue's categories, their dimensions with their rubrics, and subjects (and which have a brief)."""
    ws = obj.open("pipeline list")
    cat = ws.catalogue
    for category in sorted(cat.categories.values(), key=lambda c: c.id):
        dims = ", ".join(d.name for d in category.dimensions)
        click.echo(f"{category.id}  {category.name}  [{dims}]")
        for d in category.dimensions:
            if not d.rated:
                click.echo(f"    {d.name}: shown as a value, not rated")
            else:
                rubric = d.rubric_text() or "no rubric (1 = very little, 10 = the most)"
                direction = "" if d.higher_is_better else ", less is better"
                click.echo(f"    {d.name} (weight {d.weight:g}{direction}): {rubric}")
        for s in sorted((s for s in cat.subjects.values() if s.category == category.id), key=lambda s: s.id):
            aliases = f"  (aliases: {', '.join(s.aliases)})" if s.aliases else ""
            if not s.brief:
                brief = "  [no brief]"
            elif (ws.settings.config_dir / s.brief).is_file():
                brief = f"  [brief: config/{s.brief}]"
            else:
                brief = f"  [brief missing: config/{s.brief}]"
            click.echo(f"  {s.id:<32} {s.name}, by {s.vendor}{aliases}{brief}")
    if cat.broken:  # each was logged on stderr when the catalogue was read
        sys.exit(ExitCode.USAGE)


@cli.command()
@click.option("--pair", "pair_ref", required=True, help="Two subject ids or aliases: a,b (order does not matter).")
@click.option("--provider", help="Provider profile: local, openai, or one from config/pipeline.toml.")
@click.option("--model", help="Model name (overrides the profile's).")
@click.option("--force", is_flag=True, help="Call the model even when the cache has this generation.")
@click.option("--cross-category", is_flag=True, help="Allow subjects from different categories.")
@click.option("--offline", is_flag=True, help="Fetch nothing: URL sources come from their stored snapshots.")
@click.option(
    "--samples",
    type=click.IntRange(1, MAX_SAMPLES),
    help="Answers to ask for; above 1 the ratings are their consensus, with the spread shown ([generation] samples).",
)
@click.option("--seed", type=int, help="Sampling seed ([generation] seed); a new seed is a new generation.")
@click.pass_obj
@handles_errors
def run(
    obj: Context,
    pair_ref: str,
    provider: str | None,
    model: str | None,
    force: bool,
    cross_category: bool,
    offline: bool,
    samples: int | None,
    seed: int | None,
) -> None:
    """Generate (or take from the cache) one comparison and write its reports."""
    ws = obj.open(f"pipeline run --pair {pair_ref}", offline=offline)
    pair = ws.pair(pair_ref, cross_category=cross_category)
    profile, why = ws.profile(provider, model)
    if not provider and ws.settings.default_provider == "auto":
        click.echo(f"provider: {profile.name} ({why})", err=True)
    backend = ws.provider(profile)
    from pipeline.progress import token_progress

    stop_on_signals()
    try:
        with token_progress(f"{pair.a.name} vs {pair.b.name}") as progress:
            outcome = ws.run_pair(pair, backend, force=force, progress=progress, samples=samples, seed=seed)
    except InterruptedRun as exc:
        click.echo(f"error: {exc}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code(exc))  # a call in flight is abandoned: its thread must not hold the process
    for what, r in outcome.steps:
        if r.cached:
            click.echo(f"{what}: cache hit, no model call (generated {r.comparison.generated_at})")
        elif r.comparison.params.get("mode") == "code":
            click.echo(f"{what}: written by code from the two profiles, no model call")
        else:
            u = r.usage
            attempts = wording.count(r.attempts, "attempt")
            click.echo(f"{what}: model called, {attempts}, {u.total_tokens} tokens ({u.describe()})")
    for path in outcome.files:
        click.echo(f"  wrote {rel(path, ws.root)}")
    if outcome.refreshed:
        shown = ", ".join(p.key for p in outcome.refreshed[:5]) + (", ..." if len(outcome.refreshed) > 5 else "")
        click.echo(f"  updated {wording.count(len(outcome.refreshed), 'other page')} showing a changed profile "
                   f"({shown})")  # fmt: skip


@cli.command()
@click.pass_obj
@handles_errors
def render(obj: Context) -> None:
    """Re-render every stored comparison's reports from the store; no model calls."""
    ws = obj.open("pipeline render")
    done = ws.render_all()
    rendered = wording.count(done.reports, "comparison")
    click.echo(f"rendered {rendered} and the index into {rel(ws.settings.reports_dir, ws.root)}")
    if done.kept:
        click.echo(
            f"kept {wording.count(len(done.kept), 'report')} already on disk that the store does not hold "
            f"({', '.join(done.kept[:5])}{', ...' if len(done.kept) > 5 else ''}); they stay in the index as they are",
            err=True,
        )


@cli.group("store")
def store_group() -> None:
    """Move comparisons between stores: export as Parquet, import (merge) exports of other machines."""


@store_group.command("export")
@click.argument("folder", type=click.Path(path_type=Path))
@click.pass_obj
@handles_errors
def store_export(obj: Context, folder: Path) -> None:
    """Write the generations, attempts, schemas, snapshots and run ledger as Parquet files into FOLDER."""
    from pipeline.store.exchange import export

    done = export(obj.open("pipeline store export").store, folder)
    counts = ", ".join(f"{n} {t}" for t, n in done.rows.items())
    click.echo(f"exported {counts} into {folder} ({done.bytes / 1e6:.1f} MB)")


@store_group.command("import")
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
@handles_errors
def store_import(obj: Context, folders: tuple[Path, ...]) -> None:
    """Merge exported FOLDERS into this store; rows it already has are skipped (importing twice adds nothing)."""
    from pipeline.store.exchange import import_

    store = obj.open("pipeline store import").store
    store.require_writable("pipeline store import")
    done = import_(store, list(folders))
    counts = ", ".join(f"{n} {t}" for t, n in done.added.items())
    click.echo(f"imported {wording.count(done.folders, 'export')} in {done.seconds:.2f} s: added {counts}")
    click.echo("write the reports with: pipeline render")


for command in (show, batch, runs, history, diff, doctor, quality):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="pipeline")
