"""spark-submit entry point: run pipelines continuously, or once with --once.

spark-submit --jars "$(ls .jars/spark/*.jar | paste -sd,)" --py-files dist/lakepipe.zip \\
    jobs/run_pipeline.py --pipeline clickstream --once --env prod
"""

import argparse

from pipelines.model.config import load_settings
from pipelines.engine.runner import run
from pipelines.platform.session import get_spark, stop_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", action="append", required=True, help="pipeline name (repeatable)")
    parser.add_argument("--once", action="store_true", help="process what is available now, then exit")
    parser.add_argument("--env", help="environment: conf/NAME.yaml")
    parser.add_argument("--conf-dir", help="folder of environment files")
    args = parser.parse_args()
    settings = load_settings(args.env, args.conf_dir)
    spark = get_spark(settings.spark, f"lakepipe-{'-'.join(args.pipeline)}")
    try:
        run(spark, settings, args.pipeline, once=args.once)
    finally:
        stop_spark(spark)


if __name__ == "__main__":
    main()
