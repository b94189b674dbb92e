"""The `relaydesk` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging
from bot.prompts.texts import PromptError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        settings = load_settings(args.config)
        code: int = asyncio.run(args.handler(settings, args))
        sys.stdout.flush()  # a reader that left shows here, not in Python's last flush at exit
        return code
    except (ConfigError, PromptError, _UsageError) as exc:
        print(f"relaydesk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `relaydesk ask … | head`: the reader has what it wanted; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit has nowhere to fail
        return 141  # 128 + SIGPIPE: what a shell shows for a program whose pipe closed


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relaydesk", description="AI helpdesk for Telegram and Slack.")
    parser.add_argument("--config", help="config file (default: $RELAYDESK_CONFIG or ./config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr in detail")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the channels config.yaml enables (Telegram, Slack)")
    run.set_defaults(handler=_run)

    chat = commands.add_parser("chat", help="talk to the desk in the terminal, as customer and operator")
    chat.set_defaults(handler=_chat)

    ask = commands.add_parser("ask", help="answer one question and show how the desk decided")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(handler=_ask)

    kb = commands.add_parser("kb", help="knowledge base").add_subparsers(dest="kb_command", required=True)
    ingest = kb.add_parser(
        "ingest", help="index the knowledge folder (only what changed); on a Chroma server, the job workers follow"
    )
    ingest.add_argument("path", nargs="?", type=Path)
    ingest.add_argument("--json", action="store_true")
    ingest.add_argument(
        "--force",
        action="store_true",
        help="Chroma server: ingest even a folder older than the collection (a rollback)",
    )
    ingest.set_defaults(handler=_ingest)
    suggest = kb.add_parser(
        "suggest", help="group frequent questions the KB could not answer into draft articles for review"
    )
    suggest.add_argument("--since", default="30d", help="7d, 24h, 30d, ... or a date such as 2026-11-01 (default 30d)")
    suggest.add_argument("--min-questions", type=int, default=3, help="smallest group to suggest (default 3)")
    suggest.add_argument(
        "--similarity", type=float, help="average cosine similarity for questions to group (default 0.84, for e5)"
    )
    suggest.add_argument("--answers", type=int, default=3, help="operator answers to show per suggestion (default 3)")
    suggest.add_argument("--json", action="store_true")
    suggest.add_argument("--write", type=Path, metavar="DIR", help="write draft articles (<lang>/<id>.md) there")
    suggest.set_defaults(handler=_suggest)

    marked = kb.add_parser("marked", help='messages operators marked "always a person" (escalation examples)')
    marked.add_argument(
        "--forget", metavar="ID", help="remove one marked message: the bot judges messages like it again"
    )
    marked.add_argument("--json", action="store_true")
    marked.set_defaults(handler=_marked)

    prompts = commands.add_parser("prompts", help="prompt files").add_subparsers(dest="prompts_command", required=True)
    check = prompts.add_parser("check", help="validate prompts/*.yaml (for CI); exit 1 on any problem")
    check.add_argument("path", nargs="?", type=Path, help="prompt folder (default: prompts.path)")
    check.set_defaults(handler=_prompts_check)

    crm = commands.add_parser("crm", help="the CRM").add_subparsers(dest="crm_command", required=True)
    crm_check = crm.add_parser("check", help="what the desk reads from the CRM for one order, mapped (crm.fields)")
    crm_check.add_argument("order_id")
    crm_check.add_argument("--json", action="store_true")
    crm_check.set_defaults(handler=_crm_check)
    outbox = commands.add_parser("outbox", help="list the deliveries no worker sends any more (parked, dead)")
    outbox.add_argument(
        "--requeue",
        nargs="+",
        metavar="ID",
        help="send these again (delivery ids, or `all` for every parked and dead one)",
    )
    outbox.add_argument("--json", action="store_true")
    outbox.set_defaults(handler=_outbox)

    report = commands.add_parser("report", help="metrics from the event log: FRT, automation, CSAT, ROI")
    report.add_argument("--since", default="7d", help="7d, 24h, 30d, ... or a date such as 2026-11-01 (default 7d)")
    report.add_argument("--format", choices=("table", "json", "csv", "html"), default="table")
    report.add_argument("--output", type=Path, help="write to this file instead of stdout")
    report.set_defaults(handler=_report)

    for name, helptext in (
        ("eval", "measure answers on a JSONL file of cases"),
        ("tune", "find the automation thresholds for a target precision"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--kb", type=Path, required=True, help="knowledge folder")
        sub.add_argument("--cases", type=Path, required=True, help="JSONL cases")
        sub.add_argument("--json", action="store_true")
        if name == "tune":
            sub.add_argument("--target-precision", type=float, default=0.95)
            sub.add_argument(
                "--out-of-scope-share",
                type=float,
                default=0.2,
                help="share of traffic no article covers, stood in for by held-out articles (0 = ignore)",
            )
            sub.add_argument(
                "--wilson-z",
                type=float,
                default=1.0,
                help="the precision's Wilson lower bound must reach the target (0 = the tuning cases' own precision)",
            )
        else:
            sub.add_argument("--failures", action="store_true", help="list each wrong answer and wrong handoff")
        sub.set_defaults(handler=_eval if name == "eval" else _tune)
    return parser


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runner import run_forever

    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    await run_forever(settings)
    return 0


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_app
    from connectors.console import ConsoleChat

    print("relaydesk: loading the knowledge base (the first run indexes it: about a minute)…", file=sys.stderr)
    app = await build_app(settings)
    try:
        await ConsoleChat(app).run()
    finally:
        await app.close()
    return 0


async def _ask(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_app

    app = await build_app(settings)
    try:
        started = time.perf_counter()
        decision = await app.desk.preview(args.question)
        ms = (time.perf_counter() - started) * 1000
    finally:
        await app.close()
    analysis, answer = decision.analysis, decision.answer
    assert analysis is not None and answer is not None
    result: dict[str, Any] = {
        "decision": decision.action,
        "answer": answer.text,
        "sources": list(answer.sources),
        "confidence": round(analysis.confidence, 4),
        "margin": round(analysis.margin, 4),
        "language": analysis.language,
        "topic": analysis.topic,
        "sentiment": str(analysis.sentiment),
        "sentiment_score": round(analysis.sentiment_score, 3),
        "priority": str(analysis.priority),
        "reasons": [str(r) for r in decision.reasons],
        "candidates": [{"id": m.article_id, "score": m.score} for m in analysis.matches],
        "ms": round(ms, 2),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"decision:   {result['decision']}" + (f" ({', '.join(result['reasons'])})" if result["reasons"] else ""))
    print(
        f"language:   {result['language']}   sentiment: {result['sentiment']} ({result['sentiment_score']})"
        f"   priority: {result['priority']}"
    )
    print(f"confidence: {result['confidence']}   margin: {result['margin']}   time: {result['ms']} ms")
    print("candidates: " + ", ".join(f"{c['id']} {c['score']}" for c in result["candidates"]))
    print(f"sources:    {', '.join(result['sources']) or '-'}")
    print("\n" + (answer.text or "(no answer)"))
    return 0


async def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_ingest_index
    from bot.knowledge.job import JobResult, Outcome, ingest_job
    from bot.knowledge.published import open_published
    from bot.knowledge.version import VersionError

    path = args.path or settings.knowledge.path
    if not path.is_dir():
        raise _UsageError(f"knowledge folder not found: {path}")
    index = await build_ingest_index(settings)
    job: JobResult | None = None
    try:
        if settings.knowledge.chroma_url:
            published = open_published(settings.knowledge, index.embedder.name, writer=True)
            try:
                job = await ingest_job(index, published, path, settings.database.url, force=args.force)
            except VersionError as exc:
                raise _UsageError(str(exc)) from None
            report = job.report
        else:  # one process, one folder: what the desk indexes on start too
            report = await index.ingest(path)
    finally:
        await index.close()
    if args.json:
        outcome = {"outcome": str(job.outcome), "version": job.folder.text} if job else {}
        if job and job.collection:
            outcome["collection"] = job.collection.text  # the version it held before the job
        print(json.dumps({**outcome, **(vars(report) if report else {})}))
    else:
        if report is not None:
            print(
                f"{path}: {report.added} added, {report.updated} updated, {report.removed} removed, "
                f"{report.unchanged} unchanged; {report.records} records; {report.seconds:.2f}s"
            )
            for file, reason in report.errors:
                print(f"  skipped {file}: {reason}")
            for file, warning in report.warnings:
                print(f"  warning {file}: {warning}")
        if job is not None:
            print(f"{path}: {job.summary()}")
    if job is not None and job.outcome is Outcome.SAME_VERSION_CHANGED:
        return 1
    return 1 if report is not None and report.errors else 0


async def _marked(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_index, marked_messages

    index = build_index(settings)
    try:
        marked = marked_messages(settings, index)
        if args.forget:
            if not await asyncio.to_thread(marked.remove, args.forget):
                raise _UsageError(f"no marked message {args.forget!r}; `relaydesk kb marked` lists them")
            print(f"forgotten {args.forget}: workers stop escalating messages like it within a minute")
            return 0
        found = await asyncio.to_thread(marked.all)
    finally:
        await index.close()
    if args.json:
        keys = ("id", "topic", "text", "operator", "marked_at")
        print(json.dumps([{key: getattr(m, key) for key in keys} for m in found], ensure_ascii=False))
        return 0
    if not found:
        print('no marked messages: operators mark one with "Always a person" (Slack) or !escalate (chat)')
    for m in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(m.marked_at))
        print(f"{m.id}  {m.topic}  {when} UTC by {m.operator or '?'}\n    {m.text}")
    return 0


async def _suggest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.analytics.report import WindowError, parse_since
    from bot.knowledge.embeddings import create_embedder
    from bot.knowledge.suggest import (
        DEFAULT_SIMILARITY,
        SuggestError,
        as_json,
        load_unanswered,
        render_text,
        suggest,
        write_drafts,
    )
    from bot.storage.db import create_engine, migrate, sessions

    similarity = DEFAULT_SIMILARITY if args.similarity is None else args.similarity
    try:
        since = parse_since(args.since)
        if args.answers < 1:
            raise SuggestError(f"--answers: got {args.answers}; expected 1 or more")
        engine = create_engine(settings.database.url)
        try:
            await migrate(engine)
            asked = await load_unanswered(sessions(engine), since)
        finally:
            await engine.dispose()
        found = await suggest(
            asked,
            create_embedder(settings.embeddings),
            similarity=similarity,
            min_questions=args.min_questions,
            max_answers=args.answers,
        )
        written = write_drafts(found, args.write, settings.knowledge.path) if args.write else []
    except (WindowError, SuggestError) as exc:
        raise _UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(as_json(found, len(asked), since, similarity), ensure_ascii=False))
    else:
        print(render_text(found, len(asked), since))
    for path in written:
        print(f"draft written: {path}", file=sys.stderr)
    if args.write and not written:
        print("no drafts written: no suggestion has an operator answer yet", file=sys.stderr)
    return 0


async def _prompts_check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.prompts.loader import check_prompts

    folder = args.path or settings.prompts.path
    problems = check_prompts(folder)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{folder}: prompts OK")
    return 1 if problems else 0


async def _crm_check(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when the order was read, 1 when the CRM does not know it or could not be asked."""
    from bot.brain.llm.compensation import load_policy
    from bot.orders.status import facts_of
    from bot.ports import CRMUnavailable
    from connectors.crm import create_crm
    from connectors.crm.http import DEFAULT_FIELDS

    try:
        crm = create_crm(settings.crm)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    policy = load_policy(settings.prompts.path / "compensation.yaml")
    mapped = {**DEFAULT_FIELDS, **settings.crm.fields} if settings.crm.provider == "http" else {}
    try:
        async with asyncio.timeout(settings.crm.timeout_s):
            order = await crm.order(args.order_id)
    except (CRMUnavailable, TimeoutError) as exc:
        print(f"{settings.crm.provider} CRM: could not be asked: {exc or 'no answer in crm.timeout_s'}")
        return 1
    if order is None:
        print(f"{settings.crm.provider} CRM: no order {args.order_id}")
        return 1
    today = datetime.date.today()
    facts = facts_of(order, today)
    offer = policy.decide(order, today=today)
    read = {
        "order_id": order.order_id,
        "status": order.status,
        "promised": order.promised.isoformat() if order.promised else None,
        "delivered": order.delivered.isoformat() if order.delivered else None,
        "expected": order.expected.isoformat() if order.expected else None,
        "tracking_url": order.tracking_url or None,
        "customer": order.customer or None,
        "total": order.total,
    }
    derived = {
        "days_late": facts.days_late,
        "problem": facts.note or None,
        "compensation": f"{offer.percent}% promo code ({offer.rule})" if offer else None,
    }
    if args.json:
        print(json.dumps({"provider": settings.crm.provider, "fields": read, "mapped_from": mapped, **derived}))
        return 0
    print(f"{settings.crm.provider} CRM, order {args.order_id}:")
    for ours, value in read.items():
        source = f"  (CRM field {mapped[ours]!r})" if ours in mapped else ""
        missing = "  ← absent from the answer" if ours in order.unmapped else ""
        print(f"  {ours:<13}{'—' if value is None else value}{source}{missing}")
    for name, value in derived.items():
        print(f"  {name:<13}{'—' if value is None else value}")
    return 0


async def _outbox(settings: Settings, args: argparse.Namespace) -> int:
    from functools import partial

    from bot.delivery.outbox import requeue, stuck
    from bot.storage.db import Transactions, create_engine, migrate
    from bot.storage.models import STUCK

    ids: list[int] | None = None
    if args.requeue and args.requeue != ["all"]:
        try:
            ids = [int(value) for value in args.requeue]
        except ValueError:
            raise _UsageError(f"--requeue: expected delivery ids or `all`, got {' '.join(args.requeue)}") from None
    engine = create_engine(settings.database.url)
    transactions = Transactions(engine)
    try:
        await migrate(engine)
        if args.requeue:
            count = await transactions.run(partial(requeue, STUCK, None, ids))
            print(f"{count} deliveries re-queued; running workers send them within a second")
            return 0
        rows = await transactions.run(stuck)
    finally:
        await transactions.close()
        await engine.dispose()
    listed = [
        {
            "id": row.id,
            "status": row.status,
            "channel": row.channel,
            "kind": row.kind,
            "conversation": row.conversation_id,
            "attempts": row.attempts,
            "queued": row.created_at.isoformat(timespec="seconds"),
            "error": row.last_error,
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(listed, indent=2, ensure_ascii=False))
    else:
        for row in listed:
            print("  ".join(f"{value}" for value in row.values()))
        print(f"{len(listed)} stuck deliveries" + (" (relaydesk outbox --requeue ID... | all)" if listed else ""))
    return 0


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.analytics.render import render
    from bot.analytics.report import WindowError, build_report, parse_since
    from bot.storage.db import create_engine, migrate, sessions

    try:
        since = parse_since(args.since)
    except WindowError as exc:
        raise _UsageError(str(exc)) from None
    engine = create_engine(settings.database.url)
    try:
        await migrate(engine)
        report = await build_report(sessions(engine), settings.analytics, since)
    finally:
        await engine.dispose()
    text = render(report, args.format)
    if args.output:
        args.output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        print(f"report written to {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


async def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from bot.analytics.evaluation import evaluate, failures

    run = await _outcomes(settings, args)
    report = evaluate(run.outcomes)
    if args.failures:
        report["failures"] = failures(run.outcomes)
    if args.json:
        print(json.dumps(report))
        return 0
    wrong = report.pop("failures", [])
    _print_report(report, False)
    for failure in wrong:
        print(
            f"\n{failure['decision']:>10}: {failure['text']!r}\n  expected {failure['expected']}, "
            f"predicted {failure['predicted']} (confidence {failure['confidence']}, margin {failure['margin']}, "
            f"similarity {failure['similarity']}); reasons: {', '.join(failure['reasons']) or '-'}"
        )
    return 0


async def _tune(settings: Settings, args: argparse.Namespace) -> int:
    from bot.analytics.evaluation import tune

    if not 0 < args.target_precision <= 1:
        raise _UsageError("--target-precision must be in (0, 1]")
    if not 0 <= args.out_of_scope_share < 1:
        raise _UsageError("--out-of-scope-share must be in [0, 1)")
    if args.wilson_z < 0:
        raise _UsageError("--wilson-z must be 0 or more")
    run = await _outcomes(settings, args, held_out=True)
    result = tune(run, args.target_precision, args.out_of_scope_share, args.wilson_z)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"# precision {result['precision']}, automation rate {result['automation_rate']} "
        f"on {result['cases']} cases (target precision {args.target_precision})"
    )
    print(yaml.safe_dump({"automation": result["settings"]}, sort_keys=False).rstrip())
    return 0


async def _outcomes(settings: Settings, args: argparse.Namespace, held_out: bool = False) -> Any:
    from bot.analytics.evaluation import CasesError, read_cases, run_cases

    try:
        cases = read_cases(args.cases)
        return await run_cases(settings, args.kb, cases, cases if held_out else None)
    except CasesError as exc:
        raise _UsageError(str(exc)) from None


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:20} {value}")
