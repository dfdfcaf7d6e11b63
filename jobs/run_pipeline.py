"""spark-submit entry point: run pipelines continuously, or once with --once.

spark-submit --jars "$(ls .jars/spark/*.jar | paste -sd,)" --py-files dist/lakepipe.zip \\
    jobs/run_pipeline.py --pipeline clickstream --once --env prod
"""

import argparse

from pipelines.engine.runner import run
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.ops.catalog import summary
from pipelines.platform.session import spark_session


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", action="append", required=True, help="pipeline name (repeatable)")
    p.add_argument("--once", action="store_true", help="process what is available now, then exit")
    p.add_argument("--from-earliest-available", action="store_true", help="read past records expired from Kafka (recorded)")
    p.add_argument("--env", help="environment: conf/NAME.yaml")
    p.add_argument("--conf-dir", help="folder of environment files")
    return p


def main() -> None:
    args = parser().parse_args()
    project = load_project(load_settings(args.env, args.conf_dir), args.pipeline)
    with spark_session(project.settings, f"lakepipe-{'-'.join(args.pipeline)}") as spark:
        result = run(spark, project, args.pipeline, args.once, args.from_earliest_available)
    if result.registered:
        print(summary(result.registered))


if __name__ == "__main__":
    main()
