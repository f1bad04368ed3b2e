"""Command-line flags derived from dataclass fields, so that every config field is overridable."""
from __future__ import annotations

import argparse
import dataclasses
import typing


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (),
                        help_text: dict[str, str] | None = None, group_title: str | None = None,
                        formats: dict | None = None, prefix: str = "") -> None:
    """Add ``--{prefix}field-name`` for every field of ``cls`` with default None (None = keep the preset's value).
    A field that is not int, float, str or bool is read as a string (the caller parses it) and its default shown
    through ``formats[name]``."""
    group = parser.add_argument_group(group_title) if group_title else parser
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        origin_args = typing.get_args(hint)
        base = next((a for a in origin_args if a is not type(None)), hint) if origin_args else hint
        if base not in (int, float, str, bool):
            base = str
        kind = _parse_bool if base is bool else base
        default = getattr(defaults, f.name)
        if formats and f.name in formats:
            default = formats[f.name](default)
        doc = (help_text or {}).get(f.name, "")
        group.add_argument(_flag(prefix + f.name), dest=prefix + f.name, type=kind, default=None, metavar=base.__name__.upper(),
                           help=f"{doc} (default: {default!r})".strip())


def overrides_from(args: argparse.Namespace, cls, skip: tuple[str, ...] = (), prefix: str = "") -> dict:
    """The fields of ``cls`` that were given on the command line (as ``--{prefix}field-name``)."""
    return {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, prefix + f.name, None) is not None}
