"""Command line: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 done, 1 some output stayed invalid, 2 usage or configuration
error, 75 the store is busy (try again later), 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from pipeline.errors import PipelineError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("pipeline")


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(func: F) -> F:
    """Turn library errors into one line on stderr and the right exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; nothing half-written was kept", 130)

    return wrapper  # type: ignore[return-value]


class Context:
    def __init__(self, workspace: str | None, store: str | None):
        self.workspace_flag = workspace
        self.store_flag = store

    def open(self, holder: str) -> Any:
        from pipeline.workspace import Workspace

        return Workspace(self.workspace_flag, store=self.store_flag, holder=holder)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", envvar="PIPELINE_WORKSPACE", help="Workspace folder (default: current folder).")
@click.option("--store", help="DuckDB store file (default: .pipeline/store.duckdb in the workspace).")
@click.option("-v", "--verbose", is_flag=True, help="Log what each stage does.")
@click.version_option(package_name="comparison-pipeline")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, store: str | None, verbose: bool) -> None:
    """Generate validated, cached, dated "X vs Y" comparison reports with an LLM."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Context(workspace, store)


@cli.command("list")
@click.pass_obj
@handles_errors
def list_cmd(obj: Context) -> None:
    """List the catalogue's categories, their dimensions and subjects."""
    cat = obj.open("pipeline list").catalogue
    for category in sorted(cat.categories.values(), key=lambda c: c.id):
        dims = ", ".join(d.name for d in category.dimensions)
        click.echo(f"{category.id}  {category.name}  [{dims}]")
        for s in sorted((s for s in cat.subjects.values() if s.category == category.id), key=lambda s: s.id):
            aliases = f"  (aliases: {', '.join(s.aliases)})" if s.aliases else ""
            click.echo(f"  {s.id:<32} {s.name}, by {s.vendor}{aliases}")


@cli.command()
@click.option("--pair", "pair_ref", required=True, help="Two subject ids or aliases: a,b (order does not matter).")
@click.option("--provider", help="Provider profile: local, openai, or one from config/pipeline.toml.")
@click.option("--model", help="Model name (overrides the profile's).")
@click.option("--force", is_flag=True, help="Call the model even when the cache has this generation.")
@click.option("--cross-category", is_flag=True, help="Allow subjects from different categories.")
@click.pass_obj
@handles_errors
def run(
    obj: Context, pair_ref: str, provider: str | None, model: str | None, force: bool, cross_category: bool
) -> None:
    """Generate (or take from the cache) one comparison and write its reports."""
    ws = obj.open(f"pipeline run --pair {pair_ref}")
    pair = ws.pair(pair_ref, cross_category=cross_category)
    profile, why = ws.profile(provider, model)
    if not provider and ws.settings.default_provider == "auto":
        click.echo(f"provider: {profile.name} ({why})", err=True)
    backend = ws.provider(profile)
    from pipeline.progress import token_progress

    with token_progress(f"{pair.a.name} vs {pair.b.name}") as progress:
        outcome = ws.run_pair(pair, backend, force=force, progress=progress)
    r = outcome.result
    if r.cached:
        click.echo(f"{pair.key}: cache hit, no model call (generated {r.comparison.generated_at})")
    else:
        u = r.usage
        click.echo(
            f"{pair.key}: model called, {r.attempts} attempt(s), {u.total_tokens} tokens "
            f"({u.prompt_tokens} prompt + {u.completion_tokens} completion)"
        )
    for path in outcome.files:
        click.echo(f"  wrote {_rel(path, ws.root)}")


@cli.command()
@click.argument("pair_ref")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True)
@click.option("--attempts", is_flag=True, help="List every recorded attempt instead, failed ones included.")
@click.pass_obj
@handles_errors
def show(obj: Context, pair_ref: str, fmt: str, attempts: bool) -> None:
    """Print the stored comparison of a pair without calling a model."""
    ws = obj.open(f"pipeline show {pair_ref}")
    pair = ws.pair(pair_ref, cross_category=True)
    if attempts:
        for row in ws.store.attempts(pair.key):
            click.echo(
                f"{row['created_at']}  #{row['number']} {row['outcome']:<15} "
                f"tokens={row['prompt_tokens']}+{row['completion_tokens']}  {row['error'] or row['problems']}"
            )
        return
    rendered = ws.renderer.render(ws.latest(pair), frozenset(c.pair_key for c in ws.store.latest_all()))
    click.echo(rendered.files[fmt], nl=False)


@cli.command()
@click.pass_obj
@handles_errors
def render(obj: Context) -> None:
    """Re-render every stored comparison's reports from the store; no model calls."""
    ws = obj.open("pipeline render")
    paths = ws.render_all()
    count = sum(1 for p in paths if p.suffix == ".json")
    click.echo(f"rendered {count} comparison(s) and the index into {_rel(ws.settings.reports_dir, ws.root)}")


def _rel(path: Any, root: Any) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def main() -> None:
    cli(prog_name="pipeline")
