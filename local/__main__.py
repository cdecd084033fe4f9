"""`python -m local <command>`: the embedded stack's command line.

Each command lives in its own module and exposes `add_arguments(parser)` and `run(args) -> int`,
so that a missing optional dependency only breaks the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "up": ("local.stack", "start the whole local stack (moto + Redshift emulator + scheduler)"),
    "redshift": ("local.redshift.server", "run the Redshift emulator's Data API endpoint alone"),
    "demo": ("local.demo", "run the whole pipeline end to end with a live view and a report"),
    "features": ("local.features", "compute the features of a history CSV with the project's SQL"),
    "evaluate": ("local.evaluate", "reproduce the handbook's evaluation protocols through CREATE MODEL"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("local"):
                continue  # command not built yet
            cmd.set_defaults(missing=exc.name)
            continue
        module.add_arguments(cmd)
        modules[name] = module
    args = parser.parse_args(argv)
    if getattr(args, "missing", None):
        print(f"error: missing dependency '{args.missing}': run `make install`", file=sys.stderr)
        return 2
    if args.command not in modules:
        print(f"error: command '{args.command}' is not available", file=sys.stderr)
        return 2
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
