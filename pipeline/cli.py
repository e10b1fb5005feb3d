"""Command line: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 done, 1 some output stayed invalid, 2 usage or configuration
error, 75 the store is busy (try again later), 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline import wording
from pipeline.errors import PipelineError, StoreError
from pipeline.exitcodes import Verdict, exit_code

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("pipeline")


def handles_errors(func: F) -> F:
    """Turn library errors into one line on stderr and their exit code (`exitcodes.exit_code`)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exit_code(exc))
        except KeyboardInterrupt as exc:
            click.echo("error: interrupted; nothing half-written was kept", err=True)
            sys.exit(exit_code(exc))

    return wrapper  # type: ignore[return-value]


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever `sys.stderr` is now (a command run in-process by a test gets its own)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _log_to_stderr(level: int) -> None:
    """The pipeline's log lines as `LEVEL: message` on stderr, configured once per process."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


class Context:
    def __init__(self, workspace: str | None, store: str | None):
        self.workspace_flag = workspace
        self.store_flag = store

    def open(self, holder: str, *, offline: bool = False) -> Any:
        from pipeline.workspace import Workspace

        return Workspace(self.workspace_flag, store=self.store_flag, holder=holder, offline=offline)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", envvar="PIPELINE_WORKSPACE", help="Workspace folder (default: current folder).")
@click.option("--store", help="DuckDB store file (default: .pipeline/store.duckdb in the workspace).")
@click.option("-v", "--verbose", is_flag=True, help="Log what each stage does.")
@click.version_option(package_name="comparison-pipeline")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, store: str | None, verbose: bool) -> None:
    """Generate validated, cached, dated "X vs Y" comparison reports with an LLM."""
    _log_to_stderr(logging.INFO if verbose else logging.WARNING)
    ctx.obj = Context(workspace, store)


@cli.command("list")
@click.pass_obj
@handles_errors
def list_cmd(obj: Context) -> None:
    """List the catalogue's categories, their dimensions and subjects (and which have a brief)."""
    cat = obj.open("pipeline list").catalogue
    for category in sorted(cat.categories.values(), key=lambda c: c.id):
        dims = ", ".join(d.name for d in category.dimensions)
        click.echo(f"{category.id}  {category.name}  [{dims}]")
        for s in sorted((s for s in cat.subjects.values() if s.category == category.id), key=lambda s: s.id):
            aliases = f"  (aliases: {', '.join(s.aliases)})" if s.aliases else ""
            brief = f"  [brief: config/{s.brief}]" if s.brief else "  [no brief]"
            click.echo(f"  {s.id:<32} {s.name}, by {s.vendor}{aliases}{brief}")


@cli.command()
@click.option("--pair", "pair_ref", required=True, help="Two subject ids or aliases: a,b (order does not matter).")
@click.option("--provider", help="Provider profile: local, openai, or one from config/pipeline.toml.")
@click.option("--model", help="Model name (overrides the profile's).")
@click.option("--force", is_flag=True, help="Call the model even when the cache has this generation.")
@click.option("--cross-category", is_flag=True, help="Allow subjects from different categories.")
@click.option("--offline", is_flag=True, help="Fetch nothing: URL sources come from their stored snapshots.")
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
) -> None:
    """Generate (or take from the cache) one comparison and write its reports."""
    ws = obj.open(f"pipeline run --pair {pair_ref}", offline=offline)
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
        attempts = wording.count(r.attempts, "attempt")
        click.echo(f"{pair.key}: model called, {attempts}, {u.total_tokens} tokens ({u.describe()})")
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
                f"tokens={row['prompt_tokens']}+{row['completion_tokens']}{_details(row)}  "
                f"{row['error'] or row['problems']}"
            )
        return
    latest = ws.latest(pair)
    existing = frozenset(c.pair_key for c in ws.store.latest_all())
    rendered = ws.renderer.render(latest, existing, ws.previous_of(latest))
    click.echo(rendered.files[fmt], nl=False)


@cli.command()
@click.pass_obj
@handles_errors
def render(obj: Context) -> None:
    """Re-render every stored comparison's reports from the store; no model calls."""
    ws = obj.open("pipeline render")
    paths = ws.render_all()
    count = sum(1 for p in paths if p.suffix == ".json")
    rendered = wording.count(count, "comparison")
    click.echo(f"rendered {rendered} and the index into {_rel(ws.settings.reports_dir, ws.root)}")


@cli.command()
@click.argument("batch_file", required=False, type=click.Path(path_type=Path))
@click.option("--category", help="Every pair of this category (instead of, or as well as, a batch file).")
@click.option("--dry-run", is_flag=True, help="Show what would be called, estimated tokens and cost; call nothing.")
@click.option("--resume", is_flag=True, help="Only what the last run of this batch did not finish.")
@click.option("--force", is_flag=True, help="Regenerate every item, fresh or not.")
@click.option("--max-cost", type=float, help="Stop starting new calls once this many dollars are spent.")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Model calls in flight at once.")
@click.option("--provider", help="Provider profile (overrides the batch file).")
@click.option("--model", help="Model name (overrides the batch file and profile).")
@click.option("--json", "json_path", help="Write a machine-readable run summary to this file ('-' for stdout).")
@click.option("--offline", is_flag=True, help="Fetch nothing: URL sources come from their stored snapshots.")
@click.option("--shard", help="Take share i of n (e.g. 2/4): a stable hash of each pair, the same on every machine.")
@click.option(
    "--via",
    type=click.Choice(["threads", "openai-batch"]),
    default="threads",
    show_default=True,
    help="threads: call the model now; openai-batch: submit to the provider's Batch API and return.",
)
@click.option(
    "--reask",
    type=click.Choice(["sync", "batch"]),
    help="openai-batch: re-ask invalid/failed items at once (sync) or in a follow-up batch.",
)
@click.option("--collect", is_flag=True, help="Collect the answers of submitted Batch API runs; re-ask what failed.")
@click.option("--cancel", is_flag=True, help="Cancel submitted Batch API runs (answers already made are collected).")
@click.option("--run", "run_id", help="With --collect/--cancel: only this run (default: every open one).")
@click.option("--wait", is_flag=True, help="With --collect: poll until every run is finished.")
@click.option("--poll", type=click.FloatRange(0.01), help="With --wait: seconds between checks ([batch_api] poll_s).")
@click.pass_obj
@handles_errors
def batch(
    obj: Context, batch_file: Path | None, category: str | None, dry_run: bool, resume: bool, force: bool,
    max_cost: float | None, concurrency: int | None, provider: str | None, model: str | None, json_path: str | None,
    offline: bool, shard: str | None, via: str, reask: str | None, collect: bool, cancel: bool, run_id: str | None,
    wait: bool, poll: float | None,
) -> None:  # fmt: skip
    """Generate or refresh many comparisons: a batch file's pairs and/or a whole category.

    Exit codes: 0 every item generated or fresh, 1 some failed or were skipped,
    2 usage error, 75 the store stayed busy or (--collect) batches are still running,
    130 interrupted (resume with --resume).
    """
    from pipeline import batch as b
    from pipeline.pricing import check_budget, estimate, load_price

    if collect or cancel:
        if batch_file or category or (collect and cancel):
            raise click.UsageError("--collect and --cancel take no batch file or --category (pick a run with --run)")
        _collect_or_cancel(obj, cancel, run_id, wait, poll, json_path)
        return
    if batch_file is None and category is None:
        raise click.UsageError("give a batch file or --category")
    ws = obj.open(f"pipeline batch {batch_file or '--category ' + str(category)}", offline=offline)
    if not dry_run:
        ws.store.require_writable("pipeline batch")
    shard_of = b.parse_shard(shard) if shard else None
    spec = (b.load_batch(batch_file) if batch_file else b.BatchSpec(name=f"category-{category}")).with_flags(
        category=category, concurrency=concurrency, shard=shard_of
    )
    profile, why = ws.profile(provider or spec.provider, model or spec.model)
    if not (provider or spec.provider) and ws.settings.default_provider == "auto":
        click.echo(f"provider: {profile.name} ({why})", err=True)
    backend = ws.provider(profile)
    if via == "openai-batch":
        from pipeline.batch.api import require_batchable

        require_batchable(backend)
    items, resumed_from = b.prepare_batch(ws.catalogue, ws.store, lambda pair: ws.prepare(pair, backend), spec,
                                          force=force, resume=resume, shard=shard_of)  # fmt: skip
    price = load_price(ws.settings.config_dir, backend.model)
    if price is None:
        log.warning("no price for model %s in config/prices.toml; costs are shown as 0", backend.model)
    policy = ws.settings.batch_api.with_reask(reask)
    discount = policy.discount if via == "openai-batch" else 1.0
    todo = [i.job.messages for i in items if i.job is not None and i.action == "generate"]
    est = estimate(todo, len(items) - len(todo), ws.settings.generation.max_tokens, price, discount=discount)
    if dry_run:
        for item in items:
            click.echo(f"{item.action:<9} {item.pair.key}  ({item.reason})")
        click.echo(f"dry run: {est.describe()}; nothing was called")
        return
    budget = spec.budget(max_cost)
    if via == "openai-batch":
        from pipeline.batch.api import submit

        check_budget(est, budget)
        sub = submit(ws.batch_context(), spec, items, backend, policy=policy, resumed_from=resumed_from,
                     concurrency=spec.concurrency)  # fmt: skip
        click.echo(
            f"run {sub.run_id} ({spec.name}, {profile.name}/{backend.model}): {sub.generate} submitted to the "
            f"Batch API in {len(sub.batches)} batch(es) ({sub.bytes / 1e6:.1f} MB), {sub.fresh} fresh"
        )
        for item in items:
            if item.action == "failed":
                click.echo(f"  failed   {item.pair.key}: {item.reason}")
        for batch_id, status in sub.batches:
            click.echo(f"  {batch_id}  {status}")
        if sub.generate:
            click.echo("collect the answers with: pipeline batch --collect  (add --wait to wait for them)")
        return
    from pipeline.batch.threads import run_batch
    from pipeline.progress import batch_progress

    _stop_on_signals()
    with batch_progress(len(items), spec.name) as on_item:
        summary = run_batch(ws.batch_context(), spec, items, backend, price=price, max_cost=budget,
                            resumed_from=resumed_from, on_item=on_item)  # fmt: skip
    _print_summary(summary)
    if json_path:
        _write_json(json_path, summary.as_dict())
    if summary.stopped_by_budget:
        click.echo(f"stopped starting new calls: the budget of ${budget:g} was reached", err=True)
    if summary.interrupted:
        hint = (
            f"pipeline batch {batch_file} --resume" if batch_file else f"pipeline batch --category {category} --resume"
        )
        click.echo(f"interrupted: what had arrived is stored; finish with: {hint}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code(summary.verdict))  # in-flight calls are abandoned; their items stay pending for --resume
    sys.exit(exit_code(summary.verdict))


def _stop_on_signals() -> None:
    """Ctrl-C and a scheduler's SIGTERM both stop the work the same careful way, even when the process
    was started with SIGINT ignored (as background jobs of a non-interactive shell are)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _collect_or_cancel(
    obj: Context, cancel: bool, run_id: str | None, wait: bool, poll: float | None, json_path: str | None
) -> None:
    from pipeline.batch import api

    ws = obj.open("pipeline batch --cancel" if cancel else "pipeline batch --collect")
    ctx = ws.batch_context()
    runs = api.open_runs(ws.store, run_id)
    if not runs:
        click.echo("no Batch API run is waiting to be collected")
        return
    if cancel:
        for run in runs:
            st = api.cancel(ctx, run)
            click.echo(f"run {st.run_id} ({st.name}): cancel requested; collect what was answered with "
                       "pipeline batch --collect")  # fmt: skip
        return
    _stop_on_signals()
    try:
        states = api.collect_until_done(ctx, runs, wait=wait, poll_s=poll, say=lambda m: click.echo(m, err=True))
    except KeyboardInterrupt as exc:
        click.echo("interrupted: everything collected so far is stored; run pipeline batch --collect again", err=True)
        sys.exit(exit_code(exc))
    for st in states:
        c = st.counts
        click.echo(
            f"run {st.run_id} ({st.name}): {st.status}; {c.get('generated', 0)} generated, {c.get('fresh', 0)} fresh, "
            f"{c.get('failed', 0)} failed, {c.get('pending', 0)} pending; "
            f"{st.usage.prompt_tokens}+{st.usage.completion_tokens} tokens, ${st.cost:.4f}"
        )
    if json_path:
        _write_json(json_path, [st.as_dict() for st in states])
    verdict = api.verdict_of(states)
    if verdict is Verdict.WAITING:
        click.echo("some batches are still running; run pipeline batch --collect again later", err=True)
    sys.exit(exit_code(verdict))


def _print_summary(summary: Any) -> None:
    u = summary.usage
    click.echo(
        f"run {summary.run_id} ({summary.name}, {summary.provider}/{summary.model}): "
        f"{summary.count('generated')} generated, {summary.count('fresh')} fresh, {summary.count('failed')} failed, "
        f"{summary.count('skipped')} skipped, {summary.count('pending')} pending; "
        f"{u.prompt_tokens}+{u.completion_tokens} tokens, ${summary.cost:.4f}, {summary.wall_s:.1f} s"
    )
    for item in summary.items:
        if item.status in ("failed", "skipped"):
            click.echo(f"  {item.status:<8} {item.pair_key}: {item.error}")


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many recent runs.")
@click.option("--items", "run_id", help="List the items of this run id.")
@click.pass_obj
@handles_errors
def runs(obj: Context, limit: int, run_id: str | None) -> None:
    """Recent batch runs: when, how many ok/failed/fresh, tokens and cost."""
    from pipeline.store import Ledger

    ledger = Ledger(obj.open("pipeline runs").store)
    if run_id:
        for it in ledger.items(run_id):
            tokens = it["prompt_tokens"] + it["completion_tokens"]
            click.echo(
                f"{it['pair_key']:<60} {it['status']:<9} attempts={it['attempts']} tokens={tokens}{_details(it)} "
                f"{it['error']}"
            )
        return
    click.echo(f"{'run':<26} {'name':<20} {'status':<11} items gen fresh fail skip pend  tokens      cost  started")
    for r in ledger.recent(limit):
        click.echo(
            f"{r['id']:<26} {r['name'][:20]:<20} {r['status']:<11} {r['items']:>5} {r['generated']:>3} "
            f"{r['fresh']:>5} {r['failed']:>4} {r['skipped']:>4} {r['pending']:>4} {r['tokens']:>7} "
            f"{r['cost']:>9.4f}  {r['started_at']}"
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


@cli.command()
@click.argument("pair_ref")
@click.pass_obj
@handles_errors
def history(obj: Context, pair_ref: str) -> None:
    """Every generation of a pair: date, model, which inputs changed, overall scores."""
    from pipeline.history import input_changes

    ws = obj.open(f"pipeline history {pair_ref}")
    pair = ws.pair(pair_ref, cross_category=True)
    generations = ws.store.history(pair.key)
    if not generations:
        raise StoreError(f"no stored comparison for {pair.key}; run `pipeline run --pair {pair.key}` first")
    from pipeline.scoring import winner, winner_name

    previous = None
    for c in generations:
        won, sa, sb = winner(c.data, pair.category)
        changed = ", ".join(input_changes(previous, c)) if previous else "first generation"
        name = winner_name(pair, won)
        click.echo(
            f"{c.generated_at}  {c.generation_id}  {c.provider}/{c.model}  overall {sa:.2f}-{sb:.2f} "
            f"({name})  inputs: {changed}"
        )
        previous = c


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--from", "from_ref", default="previous", show_default=True,
    help="Generation: 'previous', 'latest', a date (YYYY-MM-DD: the one in effect then) or an id prefix.",
)  # fmt: skip
@click.option("--to", "to_ref", default="latest", show_default=True, help="Generation, as for --from.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
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
    elif len(targets) == 1:
        from pipeline.history import pick
        from pipeline.render import report_json

        ws = obj.open(f"pipeline diff {targets[0]}")
        pair = ws.pair(targets[0], cross_category=True)
        generations = ws.store.history(pair.key)
        first, second = pick(generations, from_ref), pick(generations, to_ref)
        old, new = (report_json(ws.renderer.view(pair, g)) for g in (first, second))
    else:
        raise click.UsageError("give a pair (a,b) or two report .json files")
    result = d.diff_reports(old, new, threshold)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(d.render_markdown(result), nl=False)
    else:
        click.echo(d.render_text(result, color=sys.stdout.isatty()), nl=False)
    sys.exit(exit_code(result.verdict))


@cli.command()
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


@cli.command()
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
    found = survey(ws.store.latest_all(), ws.catalogue, ws.renderer.overrides, ws.renderer.caps)
    for e in found.entries:
        mark = "FAIL" if e.quality.fails else ("old " if not e.quality.gated else "ok  ")
        click.echo(f"{mark} {e.pair_key}  {e.generated_at}  {e.model}: {e.quality.line()}")
        for gate in e.quality.failed:
            for problem in e.quality.problems[gate][:3]:
                click.echo(f"       {problem}")
    t = found.totals()
    c = t["claims"]
    click.echo(
        f"{wording.count(t['reports'], 'report')}: {t['passing']} pass every gate, {t['failing']} fail one, "
        f"{t['made_before_gates']} made before the gates; claims: {c['supported']} supported "
        f"({100 * t['supported_share']:.0f}%), {c['weak']} weak, {c['unsupported']} unsupported, {c['uncited']} uncited"
    )
    if json_path:
        _write_json(json_path, found.as_dict())
    sys.exit(exit_code(found.verdict))


def _details(row: dict[str, Any]) -> str:
    """ " (cached 300, reasoning 500)" for a ledger or attempt row that has them."""
    parts = [f"{k} {row[f'{k}_tokens']}" for k in ("cached", "reasoning") if row.get(f"{k}_tokens")]
    return f" ({', '.join(parts)})" if parts else ""


def _write_json(json_path: str, value: Any) -> None:
    """`--json FILE`: the value as JSON into FILE, or on stdout for '-'."""
    import json

    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    if json_path == "-":
        click.echo(text, nl=False)
    else:
        Path(json_path).write_text(text, encoding="utf-8")


def _rel(path: Any, root: Any) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def main() -> None:
    cli(prog_name="pipeline")
