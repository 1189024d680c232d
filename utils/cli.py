"""A command-line interface built from an entry function's signature.

Flags are exactly the keyword names (`--num_epochs 2`); booleans take `--flag` / `--no-flag`; lists are
comma strings as in the JSON (`--ema_rate 0.9999,0.99`), a leading minus included (`--norm_range -20,20`);
a `typing.Literal` annotation lists its choices in --help; an omitted flag keeps the default. The help
text of each flag is the trailing `# comment` of its keyword in the source (required keywords too), plus
the default.
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

_NONE_WORDS = {"none", "null"}


def _parse_scalar(text: str, kind: type | None, allow_none: bool = True) -> Any:
    if allow_none and text.strip().lower() in _NONE_WORDS:
        return None
    if kind is bool:
        if text.lower() in {"true", "1", "yes"}:
            return True
        if text.lower() in {"false", "0", "no"}:
            return False
        raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    for guess in (int, float):  # no annotation: numbers when they parse, else the string
        try:
            return guess(text)
        except ValueError:
            pass
    return text


def _unwrap(annotation) -> tuple[type | None, bool]:
    """(scalar type, is_list) of an annotation such as Optional[list[int]] or str | int."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0]), False
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        element = args[0] if args and args[0] is not Ellipsis else None
        return (element if isinstance(element, type) else None), True
    if args:  # Union / Optional
        if len(args) == 1:
            return _unwrap(args[0])
        if any(typing.get_origin(a) in (list, tuple) or a in (list, tuple) for a in args):
            return None, True
        return None, False
    return (annotation if isinstance(annotation, type) else None), False


def _comments(func: Callable) -> dict[str, str]:
    """Trailing comments of the keyword lines in the function's source."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    for line in source.splitlines():
        match = re.match(r"^\s*(?:def\s+\w+\()?(\w+)\s*(?::[^=#]*)?(?:=[^#]*)?,?\s*#\s*(.+)$", line)
        if match and match.group(1) not in found:
            found[match.group(1)] = match.group(2).strip()
    return found


def _choices(annotation) -> tuple | None:
    """The values of a `typing.Literal` annotation (None for any other annotation)."""
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None


class _Parser(argparse.ArgumentParser):
    """argparse, except that a value starting with '-' after a flag that takes one is that flag's value
    (`--norm_range -20,20`; argparse alone reads only plain negative numbers so)."""

    def parse_known_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        takes_value = {opt for action in self._actions if action.nargs is None
                       and not isinstance(action, argparse.BooleanOptionalAction) for opt in action.option_strings}
        joined, i = [], 0
        while i < len(argv):
            if argv[i] in takes_value and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                    and argv[i + 1] not in self._option_string_actions:
                joined.append(f"{argv[i]}={argv[i + 1]}")
                i += 2
            else:
                joined.append(argv[i])
                i += 1
        return super().parse_known_args(joined, namespace)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help text already states one (list flags) and for required flags."""

    def _get_help_string(self, action):
        if "(required)" in (action.help or ""):  # a keyword whose None default means "must be given"
            return action.help
        if action.required:
            return f"{action.help} (required)".strip()
        return action.help if "default:" in (action.help or "") else super()._get_help_string(action)


def build_parser(func: Callable) -> argparse.ArgumentParser:
    """An argparse parser whose options are the keyword arguments of `func`."""
    doc = inspect.getdoc(func) or ""
    parser = _Parser(description=doc.split("\n\n")[0],
                                     formatter_class=_HelpFormatter)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: fall back to the defaults' types
        hints = {}
    comments = _comments(func)
    for name, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        kind, is_list = _unwrap(hints[name]) if name in hints else (None, False)
        if name not in hints and default is not None:
            kind, is_list = type(default), isinstance(default, (list, tuple))
            if is_list:
                kind = type(default[0]) if default else None
        help_text = comments.get(name, "")
        if kind is bool and not is_list:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        if is_list:
            def parse(text: str, kind=kind) -> list | None:
                if text.strip().lower() in _NONE_WORDS:
                    return None
                return [_parse_scalar(item.strip(), kind) for item in text.split(",") if item.strip()]
            shown = ",".join(str(v) for v in default) if isinstance(default, (list, tuple)) else default
            parser.add_argument(f"--{name}", type=parse, default=default, metavar="A,B,...",
                                help=f"{help_text} (comma-separated; default: {shown})".strip())
            continue
        # 'none' means None only where None is a possible value (not for a str option defaulting to "none")
        allow_none = default is None or type(None) in typing.get_args(hints.get(name))
        choices = _choices(hints.get(name))
        if choices and help_text:
            help_text += f" (one of: {', '.join(map(str, choices))})"
        parser.add_argument(f"--{name}", type=lambda text, kind=kind, allow_none=allow_none:
                            _parse_scalar(text, kind, allow_none), choices=choices,
                            default=default, required=param.default is inspect.Parameter.empty, help=help_text)
    return parser


TRACEBACK_ENV = "PDM_RADAR_TRACEBACK"  # set to 1 to see the full traceback of an error instead of one line


def error_line(err: BaseException) -> str:
    """One line describing `err`: its message (newlines folded) and, for an unexpected kind of error, its type;
    an OSError also names its file (e.g. ENOSPC while writing `path`)."""
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    if not isinstance(err, (ValueError, FileNotFoundError, FileExistsError)) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text


def command_line_spelling(text: str, func: Callable) -> str:
    """`text` with the Python spelling of `func`'s boolean keywords (`overwrite=True`) turned into the flags a
    command-line user types (`--overwrite`, `--no-overwrite` for `=False`)."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: no boolean keywords known
        hints = {}
    flags = [name for name, hint in hints.items() if hint is bool]
    for name in flags:
        text = re.sub(rf"\b{name}=True\b", f"--{name}", text)
        text = re.sub(rf"\b{name}=False\b", f"--no-{name}", text)
    return text


def _close_progress_bars() -> None:
    """Close every open tqdm bar so that an error line starts on a line of its own."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def pick_alias(name: str, value: Any, alias: str, alias_value: Any, default: Any = None) -> Any:
    """The value of a keyword that has a second spelling (`sample_class` / `sampled_class`): whichever of the
    two differs from `default`; ValueError when both are set to different values."""
    if alias_value == default:
        return value
    if value != default and value != alias_value:
        raise ValueError(f"{name}={value!r} and {alias}={alias_value!r}: the same option under two names; "
                         "pass only one")
    return alias_value


def run_cli(func: Callable, argv: Sequence[str] | None = None) -> Any:
    """Parse `argv` (default sys.argv[1:]) into keywords of `func` and call it.

    Any error raised by `func` prints one line `error: ...` on stderr (after closing open progress bars)
    and exits with status 2 for bad input (ValueError / FileNotFoundError / FileExistsError), 1 otherwise.
    With the environment variable PDM_RADAR_TRACEBACK=1 the error propagates with its traceback.
    KeyboardInterrupt and SystemExit pass through.
    """
    args = build_parser(func).parse_args(argv)
    try:
        return func(**vars(args))
    except Exception as err:
        if os.environ.get(TRACEBACK_ENV, "").strip().lower() in {"1", "true", "yes"}:
            raise
        _close_progress_bars()
        print(f"error: {command_line_spelling(error_line(err), func)}", file=sys.stderr)
        raise SystemExit(2 if isinstance(err, (ValueError, FileNotFoundError, FileExistsError)) else 1) from None
