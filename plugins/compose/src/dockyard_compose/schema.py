"""A small validator for the compose model: dataclasses checked against their own annotations.

Why not pydantic: importing pydantic and building the compose model's validators cost about
0.36 s on every ``dockyard compose`` command, a third of a whole 10-service ``up -d`` (see issue
#8's figures). jsonschema costs 0.17 s to import; msgspec stops at the first problem, and a file's
every problem is reported here. What is needed is small: the annotation forms below, short
syntaxes normalised by ``Before`` converters, every problem collected with its location, and the
two dumps the loader and the config hash use.

Annotation forms: ``str``, ``int``, ``float``, ``bool``, ``Any``, ``X | None``, ``Literal[...]``,
``list[X]``, ``dict[str, X]``, a model class, and ``Annotated[X, Before(fn) | Bounds(...)]``.
Scalars are coerced as YAML and interpolation need (``"true"`` is a boolean, ``"8"`` an integer),
as pydantic's lax mode did. A model may define ``_before(cls, data)`` (a classmethod that may
reshape the raw value) and ``_after(self)``; both raise ``ValueError`` to report a problem.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
Check = Callable[[Any, Loc, list[Problem]], Any]


class _Invalid:
    """Returned by a check that reported a problem (``None`` is a valid value)."""


INVALID: Any = _Invalid()


@dataclass(frozen=True)
class Before:
    """Convert the raw value before it is checked against the type (short -> long syntax)."""

    fn: Callable[[Any], Any]


@dataclass(frozen=True)
class Bounds:
    ge: float | None = None
    le: float | None = None


class SchemaError(Exception):
    """Every problem found in one value: ``(location, message)`` pairs."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        self.problems = problems


def kind(v: Any) -> str:
    """How a wrong value is described in a message: ``a list``, ``int 5``, ``str 'x'``."""
    return {dict: "a mapping", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(v), f"{type(v).__name__} {v!r}")


# --- model classes ------------------------------------------------------------------------------------


def _repr(self: Any) -> str:
    return f"{type(self).__name__}(" + ", ".join(
        f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)) + ")"


def _eq(self: Any, other: Any) -> bool:
    if type(other) is not type(self):
        return NotImplemented  # type: ignore[no-any-return]
    return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))


def model(cls: type[T]) -> type[T]:
    """Make ``cls`` a keyword-only dataclass; ``[]``/``{}`` class defaults become fresh copies.

    ``__repr__`` and ``__eq__`` are shared functions rather than generated per class: generating
    them for the model's 28 classes took 15 ms of every command's start-up.
    """
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name)
        if isinstance(value, (list, dict)):
            if value:
                raise TypeError(f"{cls.__name__}.{name}: only an empty list or mapping may be a default")
            setattr(cls, name, dataclasses.field(default_factory=type(value)))
    out = dataclass(kw_only=True, repr=False, eq=False)(cls)
    out.__repr__ = _repr  # type: ignore[assignment]
    out.__eq__ = _eq  # type: ignore[assignment]
    out.__hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq=True
    out.__compose_model__ = True  # type: ignore[attr-defined]
    return out


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and getattr(tp, "__compose_model__", False) is True


def fields_set(obj: Any) -> frozenset[str]:
    """The keys that were present in the validated input (pydantic's ``model_fields_set``)."""
    return getattr(obj, "_fields_set", frozenset())


# --- compiling annotations into checks ----------------------------------------------------------------


def _describe(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}[tp]


_TRUE = {"true", "yes", "on", "y", "t", "1"}
_FALSE = {"false", "no", "off", "n", "f", "0"}
_INT = re.compile(r"^\s*[+-]?\d+\s*$")


def _scalar(tp: Any) -> Check:
    what = _describe(tp)

    def fail(v: Any, loc: Loc, errs: list[Problem]) -> Any:
        errs.append((loc, f"expected {what}, got {kind(v)}"))
        return INVALID

    if tp is str:
        def check_str(v: Any, loc: Loc, errs: list[Problem]) -> Any:
            return v if isinstance(v, str) else fail(v, loc, errs)
        return check_str
    if tp is bool:
        def check_bool(v: Any, loc: Loc, errs: list[Problem]) -> Any:
            if isinstance(v, bool):
                return v
            if isinstance(v, int) and v in (0, 1):
                return bool(v)
            if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
                return v.strip().lower() in _TRUE
            return fail(v, loc, errs)
        return check_bool
    if tp is int:
        def check_int(v: Any, loc: Loc, errs: list[Problem]) -> Any:
            if isinstance(v, bool):
                return fail(v, loc, errs)
            if isinstance(v, int):
                return v
            if isinstance(v, float) and v.is_integer():
                return int(v)
            if isinstance(v, str) and _INT.match(v):
                return int(v)
            return fail(v, loc, errs)
        return check_int

    def check_float(v: Any, loc: Loc, errs: list[Problem]) -> Any:
        if isinstance(v, bool):
            return fail(v, loc, errs)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                pass
        return fail(v, loc, errs)
    return check_float


def _literal(choices: tuple[Any, ...]) -> Check:
    names = [repr(c) for c in choices]
    text = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]

    def check(v: Any, loc: Loc, errs: list[Problem]) -> Any:
        if isinstance(v, str) and v in choices:
            return v
        errs.append((loc, f"expected {text}, got {kind(v)}"))
        return INVALID
    return check


def _optional(inner: Check) -> Check:
    def check(v: Any, loc: Loc, errs: list[Problem]) -> Any:
        return None if v is None else inner(v, loc, errs)
    return check


def _list(inner: Check) -> Check:
    def check(v: Any, loc: Loc, errs: list[Problem]) -> Any:
        if not isinstance(v, list):
            errs.append((loc, f"expected a list, got {kind(v)}"))
            return INVALID
        out = [inner(x, (*loc, i), errs) for i, x in enumerate(v)]
        return INVALID if any(x is INVALID for x in out) else out
    return check


def _dict(inner: Check) -> Check:
    def check(v: Any, loc: Loc, errs: list[Problem]) -> Any:
        if not isinstance(v, dict):
            errs.append((loc, f"expected a mapping, got {kind(v)}"))
            return INVALID
        out: dict[str, Any] = {}
        bad = False
        for k, x in v.items():
            if not isinstance(k, str):
                errs.append((loc, f"keys must be strings, got {kind(k)}"))
                bad = True
                continue
            out[k] = inner(x, (*loc, k), errs)
            bad = bad or out[k] is INVALID
        return INVALID if bad else out
    return check


def _annotated(inner: Check, meta: tuple[Any, ...]) -> Check:
    befores = [x.fn for x in meta if isinstance(x, Before)]
    bounds = [x for x in meta if isinstance(x, Bounds)]

    def check(v: Any, loc: Loc, errs: list[Problem]) -> Any:
        for fn in befores:
            try:
                v = fn(v)
            except ValueError as exc:
                errs.append((loc, str(exc)))
                return INVALID
        v = inner(v, loc, errs)
        if v is INVALID or v is None:
            return v
        for b in bounds:
            if (b.ge is not None and v < b.ge) or (b.le is not None and v > b.le):
                rng = " and ".join(f"{op} {x}" for op, x in ((">=", b.ge), ("<=", b.le)) if x is not None)
                errs.append((loc, f"expected a value {rng}, got {kind(v)}"))
                return INVALID
        return v
    return check


def compile_type(tp: Any) -> Check:
    if tp is Any:
        return lambda v, loc, errs: v
    if tp in (str, int, float, bool):
        return _scalar(tp)
    if is_model(tp):
        return lambda v, loc, errs: _validate_model(tp, v, loc, errs)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _annotated(compile_type(args[0]), tp.__metadata__)
    if origin is typing.Literal:
        return _literal(args)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise TypeError(f"only X | None unions are supported, not {tp}")
        return _optional(compile_type(rest[0]))
    if origin is list:
        return _list(compile_type(args[0]))
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"mappings must have string keys, not {tp}")
        return _dict(compile_type(args[1]))
    raise TypeError(f"unsupported annotation {tp!r}")


@dataclass
class _Plan:
    checks: dict[str, Check]
    required: frozenset[str]
    before: Callable[[Any], Any] | None
    after: Callable[[Any], Any] | None


def _plan(cls: type) -> _Plan:
    """The compiled checks of a model class, built on first use and kept on the class."""
    plan: _Plan | None = cls.__dict__.get("__compose_plan__")
    if plan is None:
        ns = vars(sys.modules[cls.__module__])  # not the class's: a field may share a type's name
        hints = typing.get_type_hints(cls, ns, ns, include_extras=True)
        fields = dataclasses.fields(cls)
        plan = _Plan(
            checks={f.name: compile_type(hints[f.name]) for f in fields},
            required=frozenset(f.name for f in fields if f.default is dataclasses.MISSING
                               and f.default_factory is dataclasses.MISSING),
            before=getattr(cls, "_before", None),
            after=getattr(cls, "_after", None))
        cls.__compose_plan__ = plan  # type: ignore[attr-defined]
    return plan


def _validate_model(cls: type, v: Any, loc: Loc, errs: list[Problem]) -> Any:
    plan = _plan(cls)
    if plan.before is not None:
        try:
            v = plan.before(v)
        except ValueError as exc:
            errs.append((loc, str(exc)))
            return INVALID
    if not isinstance(v, dict):
        errs.append((loc, f"expected a mapping, got {kind(v)}"))
        return INVALID
    values: dict[str, Any] = {}
    bad = False
    for key, raw in v.items():
        if isinstance(key, str) and key.startswith("x-"):
            continue
        check = plan.checks.get(key) if isinstance(key, str) else None
        if check is None:
            errs.append((loc, unknown_key(key, plan.checks)))
            bad = True
            continue
        values[key] = check(raw, (*loc, key), errs)
        bad = bad or values[key] is INVALID
    for key in sorted(plan.required - values.keys()):
        errs.append((loc, f"missing required key {key!r}"))
        bad = True
    if bad:
        return INVALID
    obj = cls(**values)
    object.__setattr__(obj, "_fields_set", frozenset(values))
    if plan.after is not None:
        try:
            plan.after(obj)
        except ValueError as exc:
            errs.append((loc, str(exc)))
            return INVALID
    return obj


def unknown_key(key: Any, known: typing.Iterable[str]) -> str:
    import difflib

    hint = difflib.get_close_matches(str(key), sorted(known), n=1)
    return f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") \
        + "; only x-* extension keys may be added"


def validate(cls: type[T], data: Any) -> T:
    """``data`` as a ``cls`` instance, or :class:`SchemaError` listing every problem."""
    errs: list[Problem] = []
    out = _validate_model(cls, data, (), errs)
    if errs or out is INVALID:
        raise SchemaError(errs)
    return out  # type: ignore[no-any-return]


# --- dumping -----------------------------------------------------------------------------------------


def dump(obj: Any, *, exclude_unset: bool = False, exclude_defaults: bool = False,
         exclude: frozenset[str] | set[str] = frozenset()) -> Any:
    """Plain data of a model (JSON types only), recursively.

    ``exclude_unset`` keeps only keys present in the validated input; ``exclude_defaults`` only
    values that differ from their field's default; ``exclude`` applies to the top level.
    """
    if is_model(type(obj)):
        out: dict[str, Any] = {}
        present = fields_set(obj) if exclude_unset else None
        for f in dataclasses.fields(obj):
            if f.name in exclude or (present is not None and f.name not in present):
                continue
            value = getattr(obj, f.name)
            if exclude_defaults:
                default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                if value == default:
                    continue
            out[f.name] = dump(value, exclude_unset=exclude_unset, exclude_defaults=exclude_defaults)
        return out
    if isinstance(obj, dict):
        return {k: dump(v, exclude_unset=exclude_unset, exclude_defaults=exclude_defaults) for k, v in obj.items()}
    if isinstance(obj, list):
        return [dump(v, exclude_unset=exclude_unset, exclude_defaults=exclude_defaults) for v in obj]
    return obj
