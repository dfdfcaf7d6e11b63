"""spark-submit entry point: one backfill (the arguments of `lakepipe backfill`), e.g. nightly:

spark-submit --jars "$(ls .jars/spark/*.jar | paste -sd,)" --py-files dist/lakepipe.zip \\
    jobs/backfill.py clickstream --layer gold --table clickstream_revenue_per_minute \\
    --from "$(date -u -d yesterday +%F)" --to "$(date -u +%F)" --env prod
"""

import argparse

from pipelines.backfill.command import add_arguments, run_backfill
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.platform.session import spark_session


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--env", help="environment: conf/NAME.yaml")
    p.add_argument("--conf-dir", help="folder of environment files")
    return p


def main() -> None:
    args = parser().parse_args()
    project = load_project(load_settings(args.env, args.conf_dir), [args.pipeline])
    with spark_session(project.settings, f"lakepipe-backfill-{args.pipeline}") as spark:
        print(run_backfill(spark, project, args).summary())


if __name__ == "__main__":
    main()
