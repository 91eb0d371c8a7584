"""Command-line options declared once, as dataclasses, and the one helper that makes argparse arguments of them.

Each field of an options dataclass is one argument: its name the flag (`--shard-size-mb` for the `r2tnet`
subcommands, `--learning_rate` for the training scripts), its type the argparse type (`int`, `float`, `list[float]`
with `nargs`; a `bool` that defaults to False is a flag without a value), its default the default (no default:
required), and `option(...)` puts its help and any other `add_argument` keyword (choices, nargs, metavar, type,
action) in the field's metadata. Each help ends with the default unless it says it already (`default:`).

`add_options(parser, cls, config=True)` makes the flags of a run config (`r2tnet_hf.training.RunConfig`): each flag's
value is kept as given and only the flags given are returned, to be laid over the keys of a YAML file and converted by
`parse_value`, the same conversion as the YAML values get ("none"/"null" for None where None is allowed, JSON for
dicts, comma lists, yes/no words for bools).

Not `transformers.HfArgumentParser`, which does the same for plain flags: importing it imports transformers (about
1 s, where `r2tnet --help` imports neither torch nor transformers), and it makes every field `--field_name` plus a
dashed alias (no positional arguments, no `--from` for `source`), every bool `--flag [FLAG]` plus `--no_flag`, every
list `nargs="+"` (no `nargs=3`, no comma lists); it parses neither dict fields nor "none" for an optional one, reads a
YAML file only whole (`parse_yaml_file`: unknown keys a ValueError that names no file) rather than under the flags,
and its usage errors are argparse's two lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing

from .errors import FmriInputError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def option(
    default=dataclasses.MISSING,
    help: str = "",
    *,
    default_factory=dataclasses.MISSING,
    flag: str | None = None,
    positional: bool = False,
    **argparse_keywords,
):
    """A dataclass field that is one command-line argument (no default: a required one).

    `flag`: a flag other than the one made from the field's name (e.g. `--from` for `source`); `positional`: an
    argument without a flag; every other keyword (choices, nargs, metavar, type, action) goes to `add_argument`.
    """
    metadata = {"help": help, "flag": flag, "positional": positional, **argparse_keywords}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def field_type(cls: type, f: dataclasses.Field) -> tuple[typing.Any, bool]:
    """The type of field `f` of `cls` without None, and whether None is allowed: `int | None` → `(int, True)`."""
    hint = _type_hints(cls)[f.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


@functools.cache
def _type_hints(cls: type) -> dict:
    return typing.get_type_hints(cls)  # the annotations are strings (`from __future__ import annotations`)


def field_default(f: dataclasses.Field):
    """The field's default (a fresh one from its factory), or `dataclasses.MISSING`."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _with_default(text: str, default, show_none: bool) -> str:
    if "default:" in text or default is dataclasses.MISSING or (default is None and not show_none):
        return text
    import json

    shown = json.dumps(default) if isinstance(default, (dict, list)) else str(default)
    return f"{text} (default: {shown.replace('%', '%%')})"


def add_options(parser: argparse.ArgumentParser, cls: type, config: bool = False) -> None:
    """One argument per field of the dataclass `cls`, in field order.

    `config`: snake_case flags whose values stay strings and appear in the namespace only when given, their types and
    choices left to `parse_value` and the class (see the module's doc); otherwise dashed flags with their types,
    defaults and `option` keywords.
    """
    for f in dataclasses.fields(cls):
        names, keywords = _argument(cls, f, config)
        parser.add_argument(*names, **keywords)


def _argument(cls: type, f: dataclasses.Field, config: bool) -> tuple[list[str], dict]:
    """The names and `add_argument` keywords of the argument of field `f`."""
    keywords = dict(f.metadata)
    text, flag, positional = keywords.pop("help", ""), keywords.pop("flag", None), keywords.pop("positional", False)
    default = field_default(f)
    if positional:
        return [f.name], {"help": text, **keywords}
    if config:
        help_text = _with_default(text, default, show_none=True)
        return [flag or f"--{f.name}"], {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
    keywords = {**_typed(cls, f, keywords), **keywords}
    if flag and not {"metavar", "choices"} & keywords.keys() and keywords.get("action") != "store_true":
        keywords["metavar"] = flag.lstrip("-").replace("-", "_").upper()  # as argparse names it from the flag
    if default is dataclasses.MISSING:
        keywords["required"] = True
    else:
        keywords["default"] = default
    shown = dataclasses.MISSING if keywords.get("action") == "store_true" else default
    keywords["help"] = _with_default(text, shown, show_none=False)
    return [flag or f"--{f.name.replace('_', '-')}"], {"dest": f.name, **keywords}


def _typed(cls: type, f: dataclasses.Field, keywords: dict) -> dict:
    """The argparse `type` (or `store_true` action) that the field's type implies, unless its keywords give one."""
    if "type" in keywords or "action" in keywords:
        return {}
    kind, _ = field_type(cls, f)
    if kind is bool and f.default is False:
        return {"action": "store_true"}
    if typing.get_origin(kind) is list:
        (kind,) = typing.get_args(kind)
    return {"type": kind} if kind in (int, float) else {}


def options_from(cls: type, namespace: argparse.Namespace):
    """The instance of `cls` that a namespace parsed by `add_options(parser, cls)` holds."""
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})


def parse_value(cls: type, f: dataclasses.Field, value, source: str):
    """A YAML or flag value as the type of field `f` of `cls`; strings "none"/"null" mean None where None is allowed.

    Bad values are refused with one line naming `source` (the file, or the flag) and the field.
    """
    kind, optional = field_type(cls, f)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise FmriInputError.for_source(source, expected=f"{f.name}: a value", found="None")
    try:
        return _as_kind(kind, value)
    except (TypeError, ValueError):  # json.JSONDecodeError is a ValueError
        raise FmriInputError.for_source(
            source, expected=f"{f.name}: {getattr(kind, '__name__', kind)}", found=repr(value)
        ) from None


def _as_kind(kind, value):
    origin = typing.get_origin(kind) or kind
    if origin is bool:
        word = str(value).lower()
        if isinstance(value, bool) or word in TRUE_WORDS + FALSE_WORDS:
            return value if isinstance(value, bool) else word in TRUE_WORDS
        raise ValueError(value)
    if origin is dict:
        import json

        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise ValueError(value)
        return value
    if origin is list:
        (item,) = typing.get_args(kind) or (str,)
        if isinstance(value, str):
            value = [part for part in value.split(",") if part]
        parts = value if isinstance(value, (list, tuple)) else [value]
        return [_as_kind(item, part) for part in parts]
    if origin is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return origin(value)
