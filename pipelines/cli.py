"""The `lakepipe` command line. Parsing and dispatch only: the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.errors import LakepipeError, disk_full_message

JVM_LOG_ENV = "LAKEPIPE_JVM_LOG"  # read by pipelines.platform.session (not imported here: it imports pyspark)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    before = os.environ.get(JVM_LOG_ENV)
    if not getattr(args, "verbose", False):
        os.environ[JVM_LOG_ENV] = "file"  # a JVM this command starts logs to a file, not the console
    try:
        return args.func(args) or 0
    except LakepipeError as exc:
        print(f"lakepipe: {exc}{_full_log()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lakepipe: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if (line := disk_full_message(str(exc))) is None:
            raise
        print(f"lakepipe: {line}{_full_log()}", file=sys.stderr)  # the person's to fix, not a bug
        return 2
    finally:
        if before is None:
            os.environ.pop(JVM_LOG_ENV, None)
        else:
            os.environ[JVM_LOG_ENV] = before


def _full_log() -> str:
    """Where the JVM's full log of this command is, when it has one with something in it."""
    session = sys.modules.get("pipelines.platform.session")  # not loaded: this command started no JVM
    path = session.log_file() if session is not None else None
    return f" (full log: {path})" if path is not None and path.is_file() and path.stat().st_size else ""


def _or_none(value: str) -> str | None:
    """An optional argument given as empty text (a scheduler's parameter left blank) is no argument."""
    return value or None


def entry() -> None:
    """The `lakepipe` entry point: `main`, whose exit code becomes the process's. Platforms that call an entry
    point as a function and ignore what it returns (Databricks' python_wheel_task) see a failure as SystemExit."""
    code = main()
    if code:
        raise SystemExit(code)


def _settings(args: argparse.Namespace):
    from pipelines.model.config import load_settings

    return load_settings(getattr(args, "env", None), getattr(args, "conf_dir", None))


def _project(args: argparse.Namespace, names: Sequence[str] | None = None):
    """The project of the environment: every pipeline, or only `names` (and those they read)."""
    from pipelines.model.project import load_project

    return load_project(_settings(args), None if names is None else list(names))


def _cmd_up(args: argparse.Namespace) -> int:
    from pipelines.platform import local_broker, local_metastore

    settings = _settings(args)
    print(local_broker.start(settings))
    if settings.local_catalog:
        print(local_metastore.start(settings))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from pipelines.platform import local_broker, local_metastore

    settings = _settings(args)
    print(local_broker.stop(settings))
    if local_metastore.running_pid(settings) is not None:
        print(local_metastore.stop(settings))
    return 0


def _cmd_metastore(args: argparse.Namespace) -> int:
    from pipelines.platform import local_metastore

    settings = _settings(args)
    action = {"up": local_metastore.start, "down": local_metastore.stop, "status": local_metastore.status}[args.action]
    print(action(settings))
    return 1 if args.action == "status" and not local_metastore.answers(settings) else 0


def _cmd_cluster(args: argparse.Namespace) -> int:
    from pipelines.platform import local_cluster

    settings = _settings(args)
    if args.action == "submit":
        if not args.job:
            raise LakepipeError("cluster submit needs a job file, e.g. `lakepipe cluster submit jobs/run_pipeline.py --pipeline clickstream --once`")
        job_args = list(args.job[1:])
        for flag, value in (("--env", settings.env), ("--conf-dir", str(settings.source.parent))):
            if flag not in job_args:  # the job runs in this environment unless its arguments name another
                job_args += [flag, value]
        cmd = local_cluster.submit_command(settings, args.job[0], job_args)
        print(f"submitting {args.job[0]} to {local_cluster.master_url(settings)}", flush=True)
        os.execve(cmd[0], cmd, local_cluster.submit_env())
    action = {"up": local_cluster.start, "down": local_cluster.stop, "status": local_cluster.status}[args.action]
    print(action(settings))
    return 1 if args.action == "status" and not local_cluster.running(settings) else 0


def _cmd_init(args: argparse.Namespace) -> int:
    from pipelines.model.scaffold import init_project

    folder = Path(args.dir)
    for path in init_project(folder, args.name):
        print(f"wrote {path}")
    print(f"next: cd {folder} && lakepipe validate (see {folder / 'README.md'})")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from pipelines.ops.catalog import run_sql
    from pipelines.platform.session import spark_session

    project = _project(args)
    if not project.settings.catalog.enabled:
        print(f"lakepipe: the catalog is off (catalog.enabled: false in {project.settings.source})", file=sys.stderr)
        return 2
    with spark_session(project.settings, "lakepipe-sql") as spark:
        result = run_sql(spark, project, args.query)
        if args.json:
            print(json.dumps([r.asDict(recursive=True) for r in result.limit(args.rows).collect()], indent=2, default=str))
        else:
            result.show(args.rows, truncate=not args.no_truncate, vertical=args.vertical)
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    from pipelines.platform import local_broker

    settings = _settings(args)
    action = {"up": local_broker.start, "down": local_broker.stop, "status": local_broker.status}[args.action]
    print(action(settings))
    return 1 if args.action == "status" and local_broker.running_pid(settings) is None else 0


def _cmd_status(args: argparse.Namespace) -> int:
    if args.watch is None:
        return _status_once(args)
    import time

    try:
        while True:  # until Ctrl-C, the way to end it (exit code 0)
            if sys.stdout.isatty():
                print("\033[2J\033[H", end="")  # clear the screen, like `watch`
            print(f"lakepipe status, every {args.watch:g} s (Ctrl-C to stop) - {time.strftime('%Y-%m-%d %H:%M:%S')}")
            _status_once(args)
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def _status_once(args: argparse.Namespace) -> int:
    from pipelines.errors import TopicMissingError
    from pipelines.ops.status import pipeline_status, prometheus_text
    from pipelines.platform import kafka_admin, local_broker, local_metastore

    settings = _settings(args)
    broker = local_broker.status(settings)
    metastore = [local_metastore.status(settings)] if settings.local_catalog else []
    names = args.pipelines or settings.pipeline_names()
    project = _project(args, names) if names else None
    if names and not kafka_admin.is_reachable(settings.kafka):
        if args.prometheus:
            print(prometheus_text([], kafka_reachable=False), end="")
            return 1
        print(broker)
        print(f"Kafka at {settings.kafka.bootstrap_servers} is not reachable: lag unknown (start it with `lakepipe up`)")
        return 1
    states, missing = [], []
    for n in names:
        try:
            states.append(pipeline_status(settings, project.pipeline(n)))
        except TopicMissingError:
            missing.append(f"{n}: topic {project.topic(n)} does not exist yet (nothing sent)")
    if args.prometheus:
        print(prometheus_text(states), end="")
    elif args.json:
        data = {"broker": broker, "metastore": (metastore or [None])[0], "pipelines": [s.to_dict() for s in states]}
        print(json.dumps({**data, "missing": missing}, indent=2))
    else:
        for line in [broker, *metastore, *(s.line() for s in states), *missing]:
            print(line)
    return 1 if any(s.breaches for s in states) else 0


def _cmd_cdc(args: argparse.Namespace) -> int:
    from pipelines.platform import local_cdc

    settings = _settings(args)
    action = {"up": local_cdc.start, "down": local_cdc.stop, "status": local_cdc.status}[args.action]
    for line in action(settings):
        print(line)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    data = _settings(args).to_dict(masked=True)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False).rstrip())
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pipelines.simulate import simulate

    tally = simulate(_project(args, [args.pipeline]), args)
    print(tally.summary())
    if args.tally_json:
        with open(args.tally_json, "w", encoding="utf-8") as f:
            json.dump(tally.to_dict(), f, indent=2)
    return 1 if tally.failed else 0


def _named_pipelines(args: argparse.Namespace, settings) -> list[str]:  # noqa: ANN001
    """The pipelines named on the command line (or all with --all); says what to do when there are none."""
    names = settings.pipeline_names() if args.all else args.pipelines
    if not names:
        print("lakepipe: name at least one pipeline, or use --all", file=sys.stderr)
    return names


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.engine import kafka_gaps, runner
    from pipelines.ops import catalog
    from pipelines.ops.run_marker import ensure_free
    from pipelines.platform import kafka_admin
    from pipelines.platform.session import spark_session

    settings = _settings(args)
    names = _named_pipelines(args, settings)
    if not names:
        return 2
    project = _project(args, names)  # config, contract, a run already going, broker and topic errors before Spark
    ensure_free([project.pipeline(n).layout.checkpoints for n in names])
    for name in names:
        kafka_admin.require_topic(settings.kafka, project.topic(name))
        p = project.pipeline(name)
        kafka_gaps.check(settings.kafka, name, p.topic, p.layout.checkpoint("bronze"), args.from_earliest_available)
    if not args.once and settings.spark.ui is None:  # a continuous run keeps Spark's UI (its Structured Streaming tab)
        settings = settings.with_spark(ui=True)
    with spark_session(settings, f"lakepipe-run-{'-'.join(names)}") as spark:
        ui = spark.sparkContext.uiWebUrl
        if ui and not args.once:
            print(f"Spark UI: {ui} (streaming queries: {ui}/StreamingQuery/, Spark metrics: {ui}/metrics/prometheus/)", flush=True)
        say = lambda line: print(line, flush=True)  # noqa: E731
        result = runner.run(spark, project, names, args.once, args.from_earliest_available, say)
    for name, why in result.not_stopped.items():
        print(f"{name}: did not stop cleanly ({why}); its next run resumes from its checkpoint")
    for name, found in result.gaps.items():
        print(f"{name}: read past records gone from Kafka (--from-earliest-available): {kafka_gaps.describe(found)}")
    if result.registered:
        print(catalog.summary(result.registered))
    for name, m in result.queries.items():
        late = f", {m.late_rows_dropped} late rows left out" if m.late_rows_dropped else ""
        print(f"{name}: {m.input_rows} rows in {m.batches} batches{late}")
    if args.metrics_json:
        with open(args.metrics_json, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=2)
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from pipelines.backfill.command import run_backfill
    from pipelines.platform.session import spark_session

    project = _project(args, [args.pipeline])
    with spark_session(project.settings, f"lakepipe-backfill-{args.pipeline}") as spark:
        record = run_backfill(spark, project, args)
    print(record.summary())
    return 0


def _tables_of_named_pipelines(args: argparse.Namespace, settings) -> list | None:  # noqa: ANN001
    """Every table of the pipelines named on the command line (or --all), once each; None when none is named."""
    names = _named_pipelines(args, settings)
    if not names:
        return None
    project = _project(args, names)
    return list({t.name: t for n in names for t in project.pipeline(n).layout.tables}.values())


def _cmd_optimize(args: argparse.Namespace) -> int:
    from pipelines.ops.maintenance import compact
    from pipelines.platform.session import spark_session

    settings = _settings(args)
    tables = _tables_of_named_pipelines(args, settings)
    if tables is None:
        return 2
    with spark_session(settings, "lakepipe-optimize") as spark:
        done = compact(spark, tables)
    for c in done:
        print(f"{c.table}: {c.files_before} files -> {c.files_after} ({c.bytes_after / 1e6:,.1f} MB)")
    if not done:
        print("no table written yet: run a pipeline first")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from pipelines.ops.plan import BLOCKING, plan

    project = _project(args, args.pipelines or None)
    blocking = 0
    for n in args.pipelines or project.settings.pipeline_names():
        for verdict in plan(project.pipeline(n)):
            blocking += verdict.verdict in BLOCKING
            print(f"{n}: {verdict.line()}")
    if blocking:
        print(f"{blocking} change(s) to make before `lakepipe run` starts (it refuses them with the same line)")
    return 1 if blocking else 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from pipelines.ops import checkpoints
    from pipelines.ops.run_marker import marked

    project = _project(args, args.pipelines or None)
    names = args.pipelines or project.settings.pipeline_names()
    refused = 0
    with marked([project.pipeline(n).layout.checkpoints for n in names], "lakepipe-repair"):  # never under a run
        for n in names:
            found = checkpoints.pipeline_damage(project.pipeline(n).layout.checkpoints, project.settings.tables_root)
            for damage in found:
                if damage.remedy is None:
                    refused += 1
                    print(f"{n}: {damage.path} is damaged ({damage.why}); not touched: {damage.refusal}")
                else:
                    moved = checkpoints.set_aside(damage)
                    print(f"{n}: {damage.path} was damaged ({damage.why}); {damage.remedy} (the file is kept as {moved})")
            if not found:
                print(f"{n}: no damaged checkpoint file")
    return 2 if refused else 0


def _cmd_maintain(args: argparse.Namespace) -> int:
    from pipelines.engine.delta_io import is_delta_table
    from pipelines.model import durations
    from pipelines.model.layout import events_table, quality_table
    from pipelines.ops.maintenance import check_retention, compact, expire, vacuum
    from pipelines.platform.session import spark_session

    check_retention(args.vacuum_retention, args.force)  # before a Spark session is started for nothing
    settings = _settings(args)
    tables = _tables_of_named_pipelines(args, settings)
    if tables is None:
        return 2
    retained = ((events_table(settings), "event_time", settings.event_log.retention),
                (quality_table(settings), "evaluated_at", settings.quality_results.retention))  # fmt: skip
    with spark_session(settings, "lakepipe-maintain") as spark:
        for table, column, retention in retained:  # the shared audit tables: their rows past retention go first
            if is_delta_table(spark, table.path):
                expire(spark, table, column, durations.seconds(retention))
                tables = [t for t in tables if t.name != table.name] + [table]
        compacted = {c.table: c for c in compact(spark, tables)}
        vacuumed = vacuum(spark, tables, args.vacuum_retention, args.force)
    for v in vacuumed:
        c = compacted[v.table]
        print(f"{v.table}: {c.files_before} files -> {c.files_after} ({c.bytes_after / 1e6:,.1f} MB); "
              f"VACUUM (retain {args.vacuum_retention:g} h) deleted {v.files_deleted} files")  # fmt: skip
    if not vacuumed:
        print("no table written yet: run a pipeline first")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipelines.model.project import check_project, load_project

    settings = _settings(args)
    results = check_project(settings)
    loaded = load_project(settings, [n for n, problem in results.items() if not problem])
    for name, problem in results.items():
        if problem:
            print(f"FAIL {name}: {problem}")
        else:
            p = loaded.pipeline(name)
            outputs = ", ".join(o.name for o in p.spec.outputs) or "none"
            quality = (f", quality: {len(p.suite.row_rules)} row rules, {len(p.suite.batch_rules)} batch rules"
                       if p.suite else "")  # fmt: skip
            print(f"ok   {name}: topic {p.topic}, contract {p.spec.contract} ({len(p.contract.fields)} fields), "
                  f"outputs: {outputs}{quality}")  # fmt: skip
            if line := _pii_line(p, settings):
                print(line)
    if not results:
        print(f"no pipeline specs in {settings.specs_dir}")
    return 2 if any(results.values()) or not results else 0


def _pii_line(p, settings) -> str | None:  # noqa: ANN001
    """What `validate` says of a pipeline's pii fields: where each is protected and how; None without any."""
    fields = p.contract.pii_fields
    if not fields:
        return None
    listed = ", ".join(f"{f.name} ({f.pii})" for f in fields)
    pii = settings.pii
    quarantine = "raw (pii.quarantine_raw_pii: true)" if pii.quarantine_raw_pii else "protected the same way"
    salt = ""
    if any(f.pii == "hash" for f in fields) and not os.environ.get(pii.salt_env):
        salt = f"; {pii.salt_env} is not set here, so `run` would refuse to start"
    return (f"     pii: {p.layout.silver.name}: {listed}; {p.layout.quarantine.name}: {quarantine}; "
            f"{p.layout.bronze.name}: raw{salt}")


def _cmd_tables(args: argparse.Namespace) -> int:
    from pipelines.ops.catalog import list_tables, markdown
    from pipelines.platform.session import spark_session

    project = _project(args)
    if args.markdown:
        print(markdown(project))
        return 0
    with spark_session(project.settings, "lakepipe-tables") as spark:
        rows = list_tables(spark, project)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            count = "-" if r["rows"] is None else r["rows"]
            print(f"{r['name']:<{width}}  {r['layer']:<10} {count:>10}  {r['location']}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from pipelines.ops.catalog import read_table
    from pipelines.platform.session import spark_session

    project = _project(args)
    with spark_session(project.settings, "lakepipe-show") as spark:
        read_table(spark, project, args.table).show(args.rows, truncate=not args.no_truncate, vertical=args.vertical)
    return 0


def _cmd_quality(args: argparse.Namespace) -> int:
    from pipelines.engine.delta_io import is_delta_table
    from pipelines.errors import TableNotFoundError
    from pipelines.model import durations
    from pipelines.platform.session import spark_session
    from pipelines.quality.report import build_docs, recorded, summary

    project = _project(args)
    table = project.owner(args.table).layout.silver.name if args.table else None
    since = durations.seconds(args.since) if args.since else None
    path = project.quality_table.path
    with spark_session(project.settings, "lakepipe-quality") as spark:
        if not project.pipelines or not is_delta_table(spark, path):
            raise TableNotFoundError("no quality results yet: run a pipeline first (`lakepipe run NAME --once`)")
        results = recorded(spark, path, table, since)
        if args.docs:
            suites = {p.layout.silver.name: p.suite for p in project.pipelines.values() if p.suite}
            index = build_docs(results, suites, Path(args.docs))
            print(f"Data Docs: {index}")
            return 0
        rows = summary(results)
    if not rows:
        print("no quality results" + (f" in the last {args.since}" if args.since else ""))
        return 0
    print(f"{'table':<24} {'rule':<26} {'action':<10} {'batches':>7} {'checked':>9} {'failing':>8} {'failed':>6}  trend")
    for r in rows:
        checked = "-" if r["rows_checked"] is None else r["rows_checked"]
        failing = "-" if r["rows_failing"] is None else r["rows_failing"]
        print(f"{r['table']:<24} {r['expectation']:<26} {r['action']:<10} {r['batches']:>7} {checked:>9} "
              f"{failing:>8} {r['failed_batches']:>6}  {r['trend']}")  # fmt: skip
    return 0


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from pipelines.engine.pii import privacy_of
    from pipelines.ops.quarantine import pending, reason_counts, replay
    from pipelines.platform.session import spark_session

    project = _project(args)
    p = project.owner(args.table)
    with spark_session(project.settings, "lakepipe-quarantine") as spark:
        if args.action == "list":
            rows = pending(spark, p.layout.quarantine.path, args.reason, args.since)
            counts = reason_counts(rows)
            print(f"{p.layout.quarantine.name}: {rows.count()} rows not replayed" + (f" with {args.reason}" if args.reason else ""))
            for reason, n in counts:
                print(f"  {reason:<32} {n:>8}")
            sample = rows.orderBy("quarantined_at", "partition", "offset").limit(args.rows).select(
                "topic", "partition", "offset", "reasons", F.substring(F.col("value").cast("string"), 1, 100).alias("value")
            )  # fmt: skip
            for r in sample.collect():
                print(f"  {r.topic}/{r.partition}/{r.offset}  {','.join(r.reasons)}  {r.value!r}")
            return 0
        result = replay(spark, p, args.reason, args.since, privacy_of(p, project.settings))
    if result.replay_id is None:
        print("nothing to replay: no quarantined rows match (or all were replayed already)")
        return 0
    print(f"{result.replay_id}: {result.selected} rows re-validated; {result.to_silver} now in silver, "
          f"{result.already_in_silver} were in silver already, {result.still_failing} still fail (new reasons kept)")  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import reset, run_demo
    from pipelines.domains import domains
    from pipelines.platform import kafka_admin
    from pipelines.platform.session import spark_session

    project = _project(args, list(domains()))
    settings = project.settings
    kafka_admin.list_topics(settings.kafka)  # one clear line if the broker is down
    if args.fresh:
        reset(project)
    with spark_session(settings, "lakepipe-demo") as spark:
        run_demo(spark, project, events=args.events)
    env = f" --env {settings.env}" if settings.env != "local" else ""
    print(f"\nexplore: lakepipe tables{env} | lakepipe show payments_fraud_alerts{env} | lakepipe run --all{env}")
    if settings.catalog.enabled:
        print(f'         lakepipe sql{env} "SELECT * FROM {settings.catalog.schema_prefix}_gold.clickstream_sessions ORDER BY revenue DESC"')
    return 0


def _parser() -> argparse.ArgumentParser:
    from pipelines.backfill.command import add_arguments as add_backfill_arguments
    from pipelines.domains import domains, fault_flags

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", default=argparse.SUPPRESS, help="environment: loads conf/NAME.yaml (default: $LAKEPIPE_ENV or local)")
    common.add_argument("--conf-dir", default=argparse.SUPPRESS, help="folder of environment files (default: $LAKEPIPE_CONF_DIR or ./conf)")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="Spark's log and Python workers' output on the console (default: in .lakepipe/logs/, "
                             "named by a failure's message)")  # fmt: skip

    parser = argparse.ArgumentParser(prog="lakepipe", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    add("up", _cmd_up, "start the local Kafka broker and the local catalog's metastore server (reuses running ones)")
    add("down", _cmd_down, "stop the local Kafka broker and the metastore server")
    p = add("metastore", _cmd_metastore, "the local catalog's metastore server: start (or reuse), stop, or say whether it answers")
    p.add_argument("action", choices=("up", "down", "status"))
    p = add("init", _cmd_init, "write a new project of one's own in DIR: an environment, a pipeline spec, its contract, "
            "suite and gold function, ready for `lakepipe validate` and `lakepipe run`")
    p.add_argument("dir", help="the project's folder (created if missing; existing files are never overwritten)")
    p.add_argument("--name", help="the pipeline's name (default: the folder's name)")
    p = add("cluster", _cmd_cluster, "a Spark standalone cluster on this machine (a master and workers, each its own JVM): "
            "start (or reuse), stop, say whether it runs, or spark-submit a job of jobs/ to it")
    p.add_argument("action", choices=("up", "down", "status", "submit"))
    p.add_argument("job", nargs=argparse.REMAINDER, help="with submit: the job file and its arguments")
    p = add("broker", _cmd_broker, "the local Kafka broker: start (or reuse), stop, or say whether it runs")
    p.add_argument("action", choices=("up", "down", "status"))
    p = add("status", _cmd_status, "whether the local broker runs; per pipeline, bronze's lag behind Kafka, each table's last commit and how far behind its source it is, and the spec's SLO verdict (exit code 1 when one is breached)")
    p.add_argument("pipelines", nargs="*", help="pipeline names (default: every pipeline of the environment)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="as JSON")
    out.add_argument("--prometheus", action="store_true", help="in Prometheus' text exposition format")
    p.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                   help="print it again every SECONDS (default 5) until Ctrl-C")
    p = add("cdc", _cmd_cdc, "the local change-data-capture source: PostgreSQL (shop database) and Debezium on Kafka Connect")
    p.add_argument("action", choices=("up", "down", "status"))
    p = add("config", _cmd_config, "print the resolved configuration, secrets masked")
    p.add_argument("--json", action="store_true", help="as JSON")

    p = add("simulate", _cmd_simulate, "publish simulated events to a pipeline's topic")
    p.add_argument("pipeline", help=f"pipeline name; the simulator is chosen by it ({', '.join(domains())})")
    how_long = p.add_mutually_exclusive_group()
    how_long.add_argument("--events", type=int, help="how many events to send (default 1000)")
    how_long.add_argument("--seconds", type=float, help="send for this many seconds")
    p.add_argument("--rate", type=float, help="events per second at most (default: as fast as possible)")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same events)")
    p.add_argument("--start", help="simulated time of the first event, ISO-8601 (default: now)")
    p.add_argument("--events-per-second", type=float, default=20.0, help="simulated event rate (event_time spacing)")
    every = set(domains())
    for flag, (text, takers) in fault_flags().items():
        who = "" if set(takers) == every else f"{', '.join(takers)}: "
        p.add_argument(f"--{flag.replace('_', '-')}", type=float, default=0.0, metavar="RATE", help=f"{who}fraction of {text}")
    p.add_argument("--topic", help="topic (default: the pipeline's topic in the conf file)")
    p.add_argument("--out", help="also write the events to this JSON-lines file (for replay)")
    p.add_argument("--replay", help="send the events of a JSON-lines file written with --out instead")
    p.add_argument("--tally-json", help="write what was sent, by kind, and the expected table counts, as JSON")
    p.add_argument("--truth", help="write the simulator's ground truth (injected fraud, anomalies, silences) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add("run", _cmd_run, "run pipelines: bronze, silver and gold, until interrupted or --once")
    p.add_argument("pipelines", nargs="*", help="pipeline names (see `lakepipe config`)")
    p.add_argument("--all", action="store_true", help="every pipeline in the conf file")
    p.add_argument("--once", action="store_true", help="process what is available now, then exit")
    p.add_argument("--metrics-json", help="write per-query metrics (rows, batches, late rows) as JSON")
    p.add_argument("--from-earliest-available", action="store_true",
                   help="when records bronze has not read expired from Kafka, read on from the first one kept (the gap "
                        "is recorded in the event log); without it such a run stops and names them")  # fmt: skip

    p = add("backfill", _cmd_backfill, "reprocess a Kafka range into bronze, or an event-time range of a derived table, as a batch")
    add_backfill_arguments(p)

    p = add("optimize", _cmd_optimize, "compact the small files of every table of some pipelines (Delta OPTIMIZE)")
    p.add_argument("pipelines", nargs="*", help="pipeline names (see `lakepipe config`)")
    p.add_argument("--all", action="store_true", help="every pipeline in the conf file")

    p = add("plan", _cmd_plan, "compare the specs and contracts with what the existing tables and checkpoints were built "
            "with: per table compatible, schema change, new checkpoint or impossible, and what to do (exit 1 if any "
            "change must be made first)")
    p.add_argument("pipelines", nargs="*", help="pipeline names (default: every pipeline of the environment)")
    p = add("repair", _cmd_repair, "set aside the damaged checkpoint files a run refused to start on, where that is "
            "safe (the batch runs or is planned again; nothing lost or doubled); say why not where it is not")
    p.add_argument("pipelines", nargs="*", help="pipeline names (default: every pipeline of the environment)")

    p = add("maintain", _cmd_maintain, "OPTIMIZE, then VACUUM, every table of some pipelines; expire old event-log and quality-results rows")
    p.add_argument("pipelines", nargs="*", help="pipeline names (see `lakepipe config`)")
    p.add_argument("--all", action="store_true", help="every pipeline in the conf file")
    p.add_argument("--vacuum-retention", type=float, default=168.0, metavar="HOURS",
                   help="keep the files of the last HOURS (default 168, Delta's safety limit)")
    p.add_argument("--force", action="store_true", help="allow a retention below 168 hours (every stream caught up)")

    p = add("demo", _cmd_demo, "simulate every domain with faults, run every pipeline, summarise each domain")
    p.add_argument("--events", type=int, default=3000, help="events per domain in the first wave (default 3000)")
    p.add_argument("--fresh", action="store_true", help="delete this environment's topic and lake folder first")

    add("validate", _cmd_validate, "check every pipeline spec, contract, quality suite and output function (no Spark streams)")

    p = add("quality", _cmd_quality, "summary per quality rule from quality_results, or Great Expectations Data Docs")
    p.add_argument("table", nargs="?", help="a pipeline or its silver table (default: all)")
    p.add_argument("--since", help="only results of the last DURATION, e.g. '2 hours'")
    p.add_argument("--docs", metavar="DIR", help="build Great Expectations Data Docs (HTML) into DIR instead")

    p = add("quarantine", _cmd_quarantine, "list quarantined rows, or replay them after a fix")
    p.add_argument("action", choices=("list", "replay"))
    p.add_argument("table", help="a pipeline, or its silver or quarantine table")
    p.add_argument("--reason", type=_or_none, help="only rows with this reason code (empty: every reason)")
    p.add_argument("--since", type=_or_none, help="only rows quarantined since this time (ISO-8601; empty: any time)")
    p.add_argument("-n", "--rows", type=int, default=10, help="list: rows to show (default 10)")

    p = add("tables", _cmd_tables, "list every table: name, layer, row count, location")
    p.add_argument("--json", action="store_true", help="as JSON: name, layer, location, rows, keys, partitioning, comment")
    p.add_argument("--markdown", action="store_true", help="the declared tables as a Markdown table (no Spark; the README's list)")

    p = add("sql", _cmd_sql, "run a SQL statement over the catalog's tables (e.g. SELECT * FROM lakepipe_gold.clickstream_sessions) and print the result")
    p.add_argument("query")
    p.add_argument("-n", "--rows", type=int, default=20, help="rows to print (default 20)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.add_argument("--vertical", action="store_true")
    p.add_argument("--no-truncate", action="store_true")

    p = add("show", _cmd_show, "print the first rows of a table")
    p.add_argument("table")
    p.add_argument("-n", "--rows", type=int, default=20)
    p.add_argument("--vertical", action="store_true")
    p.add_argument("--no-truncate", action="store_true")
    return parser


if __name__ == "__main__":
    sys.exit(main())
