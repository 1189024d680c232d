"""Command line from a function signature: ``run_cli(main)``.

Every keyword of ``func`` becomes ``--keyword`` (same spelling); booleans get ``--x`` and
``--no-x``; lists/tuples are comma strings; the help of an option is the line
``keyword: text`` of the function's docstring, and ``--help`` shows the defaults.
"""
from __future__ import annotations

import argparse
import inspect
import re
import typing


def _docstring_help(func) -> dict[str, str]:
    doc = inspect.getdoc(func) or ""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s*(\w+):\s*(.+)$", doc, re.M)}


def _base_type(annotation, default):
    """(scalar type, is_sequence) of a parameter from its annotation, else its default."""
    if isinstance(annotation, str):
        sequence = any(s in annotation for s in ("list", "tuple", "Sequence"))
        for name, typ in (("bool", bool), ("int", int), ("float", float)):
            if re.search(rf"\b{name}\b", annotation):
                return typ, sequence
        return str, sequence
    if default is not None and not isinstance(default, (list, tuple)):
        return type(default), False
    for arg in typing.get_args(annotation) or (annotation,):
        origin = typing.get_origin(arg)
        if origin in (list, tuple):
            inner = [a for a in typing.get_args(arg) if a is not Ellipsis]
            return (inner[0] if inner else str), True
        if arg in (bool, int, float, str):
            return arg, False
    return str, False


def _parser_of(func) -> argparse.ArgumentParser:
    helps = _docstring_help(func)
    first = (inspect.getdoc(func) or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(description=first, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name, p in inspect.signature(func).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        typ, sequence = _base_type(p.annotation, default)
        text = helps.get(name, " ")
        if typ is bool and not sequence:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default, help=text)
        elif sequence:
            def parse(s, typ=typ):
                return [typ(v) for v in s.split(",") if v.strip()]
            parser.add_argument(f"--{name}", type=parse, default=default, help=f"{text} (comma list)")
        else:
            parser.add_argument(f"--{name}", type=typ, default=default, help=text,
                                required=p.default is inspect.Parameter.empty)
    return parser


def run_cli(func, argv: list[str] | None = None):
    """Parse ``argv`` (default ``sys.argv[1:]``) against ``func``'s keywords and call it."""
    return func(**vars(_parser_of(func).parse_args(argv)))
