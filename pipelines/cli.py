"""The `lakepipe` command line. Parsing and dispatch only: the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pipelines.errors import LakepipeError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except LakepipeError as exc:
        print(f"lakepipe: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lakepipe: interrupted", file=sys.stderr)
        return 130


def _settings(args: argparse.Namespace):
    from pipelines.config import load_settings

    return load_settings(getattr(args, "env", None), getattr(args, "conf_dir", None))


def _cmd_up(args: argparse.Namespace) -> int:
    from pipelines import local_broker

    print(local_broker.start(_settings(args)))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from pipelines import local_broker

    print(local_broker.stop(_settings(args)))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from pipelines import local_broker

    print(local_broker.status(_settings(args)))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    data = _settings(args).to_dict(masked=True)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False).rstrip())
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", default=argparse.SUPPRESS, help="environment: loads conf/NAME.yaml (default: $LAKEPIPE_ENV or local)")
    common.add_argument("--conf-dir", default=argparse.SUPPRESS, help="folder of environment files (default: $LAKEPIPE_CONF_DIR or ./conf)")

    parser = argparse.ArgumentParser(prog="lakepipe", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    add("up", _cmd_up, "start the local Kafka broker (reuses a running one)")
    add("down", _cmd_down, "stop the local Kafka broker")
    add("status", _cmd_status, "say whether the local Kafka broker runs")
    p = add("config", _cmd_config, "print the resolved configuration, secrets masked")
    p.add_argument("--json", action="store_true", help="as JSON")
    return parser


if __name__ == "__main__":
    sys.exit(main())
