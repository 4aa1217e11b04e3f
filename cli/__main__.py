"""The `unmute` command: `unmute up | status | url | logs | down` (see `unmute --help`)."""

from __future__ import annotations

import argparse
import sys

from cli import down, logs, status, up, url
from cli.errors import CliError


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="unmute",
        description="Start, watch and stop the voice assistant's SLURM job (docs/cli.md).",
    )
    commands = main.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in (up, status, url, logs, down):
        command.add_parser(commands)
    return main


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors print what to do and exit non-zero, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    # Everything after -- goes to sbatch untouched (unmute up ... -- --qos=high).
    ours, sbatch = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser().parse_args(ours)
    if sbatch and args.run is not up.run:
        parser().error("only `unmute up` passes arguments after -- (to sbatch)")
    args.sbatch = sbatch
    try:
        return args.run(args)
    except CliError as error:
        print(f"unmute: error: {error}", file=sys.stderr)
        return error.status


if __name__ == "__main__":
    sys.exit(main())
