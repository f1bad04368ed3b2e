"""The ``sdft-lite`` command line: the top layer of the package. Each command is a module of this package with an
``add_parser(subparsers)`` function that sets ``func`` on its parser; the code it runs lives in the layers below
(the core, ``editing``, ``metrics``, ``synthfaces``, ``experiments``)."""
from __future__ import annotations

import argparse
import importlib
import sys

USER_ERRORS: tuple = ()

# modules providing add_parser(subparsers); order = order in --help
COMMAND_MODULES = [
    "sdft_lite.cli.train",
    "sdft_lite.cli.evaluate",
    "sdft_lite.cli.synthfaces",
    "sdft_lite.cli.editing",
    "sdft_lite.cli.demo",
]


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..checkpoint import CheckpointMismatchError, MissingWeightsError
    from ..data import DataError
    from ..train import ConfigError, ResumeMismatchError, TrainingDiverged
    return (DataError, MissingWeightsError, CheckpointMismatchError, TrainingDiverged, FileNotFoundError,
            ConfigError, ResumeMismatchError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdft-lite",
        description="SDFT for diffusion models (Hur et al., WACV 2024): fine-tune a diffusion model on a small "
                    "dataset without losing what the source model knew.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def _version() -> str:
    from .. import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    global USER_ERRORS
    USER_ERRORS = _user_errors()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as error:   # a clear message, not a traceback
        print(f"sdft-lite {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
