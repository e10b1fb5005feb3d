"""`pipeline batch` (direct calls, or submit/collect/cancel on the Batch API) and `pipeline runs`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import Context, details, handles_errors, log, stop_on_signals, write_json
from pipeline.errors import StoreError
from pipeline.exitcodes import Verdict, exit_code
from pipeline.settings import MAX_SAMPLES


@click.command()
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
@click.option(
    "--samples",
    type=click.IntRange(1, MAX_SAMPLES),
    help="Answers per pair; above 1 the ratings are their consensus (overrides the batch file and config).",
)
@click.option("--seed", type=int, help="Sampling seed (overrides the batch file's [generation] seed and config).")
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
    offline: bool, shard: str | None, via: str, reask: str | None, samples: int | None, seed: int | None,
    collect: bool, cancel: bool, run_id: str | None, wait: bool, poll: float | None,
) -> None:  # fmt: skip
    """Generate or refresh many comparisons: a batch file's pairs and/or a whole category.

    Exit codes: 0 every item generated or fresh, 1 some failed or were skipped,
    2 usage error, 75 the store stayed busy or (--collect) batches are still running,
    130 interrupted (resume with --resume).
    """
    from pipeline import batch as b
    from pipeline.pricing import check_budget

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
        category=category, concurrency=concurrency, shard=shard_of, samples=samples, seed=seed
    )
    plan = ws.plan_batch(spec, provider, model, via=via, force=force, resume=resume, shard=shard_of, reask=reask,
                         dry_run=dry_run)  # fmt: skip
    items, backend, est = plan.items, plan.provider, plan.estimate
    if plan.chosen_because:
        click.echo(f"provider: {plan.profile.name} ({plan.chosen_because})", err=True)
    if plan.price is None:
        log.warning("no price for model %s in config/prices.toml; costs are shown as 0", backend.model)
    if dry_run:
        for item in items:
            click.echo(f"{item.action:<9} {item.unit}  ({item.reason})")
        click.echo(f"dry run: {est.describe()}; nothing was called")
        return
    budget = spec.budget(max_cost)
    if via == "openai-batch":
        from pipeline.batch.api import submit

        check_budget(est, budget)
        sub = submit(ws.batch_context(), spec, items, backend, policy=plan.policy, resumed_from=plan.resumed_from,
                     concurrency=spec.concurrency)  # fmt: skip
        click.echo(
            f"run {sub.run_id} ({spec.name}, {plan.profile.name}/{backend.model}): {sub.generate} submitted to the "
            f"Batch API in {len(sub.batches)} batch(es) ({sub.bytes / 1e6:.1f} MB), {sub.fresh} fresh"
        )
        for item in items:
            if item.action == "failed":
                click.echo(f"  failed   {item.unit}: {item.reason}")
        for batch_id, status in sub.batches:
            click.echo(f"  {batch_id}  {status}")
        if sub.generate:
            click.echo("collect the answers with: pipeline batch --collect  (add --wait to wait for them)")
        return
    from pipeline.batch.threads import run_batch
    from pipeline.progress import batch_progress

    stop_on_signals()
    with batch_progress(len(items), spec.name) as on_item:
        summary = run_batch(ws.batch_context(), spec, items, backend, price=plan.price, max_cost=budget,
                            resumed_from=plan.resumed_from, on_item=on_item, stage_two=plan.stage_two)  # fmt: skip
    _print_summary(summary)
    if json_path:
        write_json(json_path, summary.as_dict())
    if summary.stopped_by_budget:
        click.echo(f"stopped starting new calls: the budget of ${budget:g} was reached", err=True)
    if summary.interrupted:
        hint = resume_command(click.get_current_context())
        click.echo(f"interrupted: what had arrived is stored; finish with: {hint}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code(summary.verdict))  # in-flight calls are abandoned; their items stay pending for --resume
    sys.exit(exit_code(summary.verdict))


def _collect_or_cancel(
    obj: Context, cancel: bool, run_id: str | None, wait: bool, poll: float | None, json_path: str | None
) -> None:
    from pipeline.batch import api

    ws = obj.open("pipeline batch --cancel" if cancel else "pipeline batch --collect")
    ctx = ws.batch_context()
    runs = api.open_runs(ws.store, run_id)
    if not runs:
        click.echo(f"no Batch API run is waiting to be {'cancelled' if cancel else 'collected'}")
        return
    if cancel:
        for run in runs:
            st = api.cancel(ctx, run)
            click.echo(f"run {st.run_id} ({st.name}): cancel requested; collect what was answered with "
                       "pipeline batch --collect")  # fmt: skip
        return
    stop_on_signals()
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
        write_json(json_path, [st.as_dict() for st in states])
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


@click.command()
@click.option("--limit", default=20, show_default=True, help="How many recent runs.")
@click.option("--items", "run_id", help="List the items of this run id.")
@click.pass_obj
@handles_errors
def runs(obj: Context, limit: int, run_id: str | None) -> None:
    """Recent batch runs: when, how many ok/failed/fresh, tokens and cost."""
    from pipeline.store import Ledger

    ledger = Ledger(obj.open("pipeline runs").store)
    if run_id:
        found = ledger.items(run_id)
        if not found:
            raise StoreError(f"no run {run_id!r} in the store (give the whole run id that `pipeline runs` shows)")
        for it in found:
            tokens = it["prompt_tokens"] + it["completion_tokens"]
            click.echo(
                f"{it['pair_key']:<60} {it['status']:<9} attempts={it['attempts']} tokens={tokens}{details(it)} "
                f"{it['error']}"
            )
        return
    rows = ledger.recent(limit)
    width = max([4, *(len(r["name"]) for r in rows)])  # names in full: a shard's "(shard 2/4)" is part of it
    click.echo(
        f"{'run':<26} {'name':<{width}} {'status':<11} items gen fresh fail skip pend  tokens      cost  started"
    )
    for r in rows:
        click.echo(
            f"{r['id']:<26} {r['name']:<{width}} {r['status']:<11} {r['items']:>5} {r['generated']:>3} "
            f"{r['fresh']:>5} {r['failed']:>4} {r['skipped']:>4} {r['pending']:>4} {r['tokens']:>7} "
            f"{r['cost']:>9.4f}  {r['started_at']}"
        )


def resume_command(ctx: click.Context) -> str:
    """The command that finishes an interrupted batch: the same command, its flags kept, with --resume."""
    import shlex

    words = ["pipeline", "batch"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value in (None, False, ()) or param.name in ("resume", "json_path") or not param.opts:
            continue
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif param.default == value:
            continue
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0])
        else:
            words += [param.opts[0], str(value)]
    return shlex.join([*words, "--resume"])
