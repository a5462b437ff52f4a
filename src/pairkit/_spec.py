"""Declared specs for everything pairkit registers by name: rating models, losses and selection strategies.

One shape for all three (the scikit-learn ``_parameter_constraints`` idea, applied to plain functions):

- an :class:`Option` declares one keyword option once — its type, valid range or choices, whether ``None`` is
  allowed, and a line of documentation;
- :func:`declare_options` attaches options to a function and checks every call's keyword options against them
  in one place, raising :class:`~pairkit.errors.InputError` naming the option, the allowed range and the value;
- an :class:`Input` declares one tensor input of a loss (what it holds, its shape, whether it is required);
- a :class:`Spec` describes a registered callable (kind, the data it takes, its inputs and options, aliases,
  whether it couples the examples of a batch) and a :class:`Registry` finds specs by name or alias.

Callers (the CLI, model comparison, trainers, the docs) read a spec; nothing reads a function signature at run
time to decide what to pass.

>>> from pairkit._spec import Option, Interval, declare_options
>>> @declare_options(Option("level", float, Interval(0, 1, closed="neither"), doc="coverage"))
... def f(x, *, level=0.95):
...     return level
>>> f(1, level=0.9)
0.9
>>> f(1, level=1.5)
Traceback (most recent call last):
...
pairkit.errors.InputError: level must be a number in (0, 1), got 1.5
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pairkit.errors import InputError

__all__ = ["Input", "Interval", "Option", "Registry", "Spec", "declare_options", "options_of", "unchecked"]

_CLOSED = ("both", "left", "right", "neither")


@dataclass(frozen=True)
class Interval:
    """A range of real numbers; ``None`` bounds are open-ended. ``closed`` says which ends belong to it."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def __post_init__(self) -> None:
        if self.closed not in _CLOSED:
            raise ValueError(f"closed must be one of {_CLOSED}, got {self.closed!r}")

    def __contains__(self, x: float) -> bool:
        if x != x:  # NaN belongs to no interval
            return False
        if self.low is not None:
            if x < self.low or (x == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if x > self.high or (x == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def describe(self) -> str:
        """``(0, 1)``, ``>= 1``, ``> 0`` …"""
        left_in = self.closed in ("both", "left")
        right_in = self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return f"{'[' if left_in else '('}{_num(self.low)}, {_num(self.high)}{']' if right_in else ')'}"
        if self.low is not None:
            return f"{'>=' if left_in else '>'} {_num(self.low)}"
        if self.high is not None:
            return f"{'<=' if right_in else '<'} {_num(self.high)}"
        return "any value"


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One keyword option: its type, valid values and documentation.

    ``kind`` is ``float``, ``int``, ``bool``, ``str``, ``callable`` or a tuple of these (a value of any of them is
    accepted; e.g. ``(str, callable)`` for "a name or a function"). Numbers must be finite unless ``finite`` is
    False; ``range`` bounds them; ``choices`` lists the allowed strings. ``none`` allows ``None``.
    """

    name: str
    kind: Any
    range: Interval | None = None
    choices: tuple | None = None
    none: bool = False
    finite: bool = True
    doc: str = ""

    def kinds(self) -> tuple:
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)

    def describe(self) -> str:
        """What a valid value is, in words: ``a number in (0, 1)``, ``an integer >= 1``, ``one of 'a', 'b'``."""
        words = []
        for kind in self.kinds():
            if kind is float:
                words.append("a number" + self._range_words())
            elif kind is int:
                words.append("an integer" + self._range_words())
            elif kind is bool:
                words.append("true or false")
            elif kind is str:
                words.append("one of " + ", ".join(map(repr, self.choices)) if self.choices else "a string")
            elif kind is callable:
                words.append("a callable")
            else:
                words.append(f"a {getattr(kind, '__name__', kind)}")
        text = " or ".join(words)
        return text + " or None" if self.none else text

    def _range_words(self) -> str:
        r = self.range
        if r is None or (r.low is None and r.high is None):
            return ""
        return f" in {r.describe()}" if _bounded(r) else f" {r.describe()}"

    def check(self, value: Any, *, where: str = "") -> Any:
        """Return ``value`` (ints given for a float option become floats) or raise :class:`InputError`."""
        if value is None:
            if self.none:
                return None
            self._fail(value, where)
        for kind in self.kinds():
            ok, converted = _accepts(self, kind, value)
            if ok:
                return converted
        self._fail(value, where)

    def _fail(self, value: Any, where: str) -> None:
        raise InputError(f"{where}{self.name} must be {self.describe()}, got {value!r}")

    def parse(self, text: str, *, where: str = "") -> Any:
        """The value written as ``text`` (a command line's ``k=32``), converted to the declared kind and checked.

        Tried in the declared order: ``none``/``null`` (when ``None`` is allowed), ``true``/``false`` (also
        ``yes``/``no``/``1``/``0``) for a bool, an integer, a number (``inf`` included), a string. A callable
        cannot be written on a command line. Raises :class:`InputError` naming the option, what a valid value
        is and the text.
        """
        raw = text.strip()
        if self.none and raw.lower() in ("none", "null"):
            return None
        for kind in self.kinds():
            value = _parse_as(kind, raw)
            if value is not _NOT_PARSED:
                ok, converted = _accepts(self, kind, value)
                if ok:
                    return converted
        if all(k is callable for k in self.kinds()):
            raise InputError(f"{where}{self.name} takes {self.describe()}, which cannot be given as text")
        raise InputError(f"{where}{self.name} must be {self.describe()}, got {raw!r}")


_NOT_PARSED = object()
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _parse_as(kind: Any, raw: str) -> Any:
    """``raw`` read as a value of ``kind``, or ``_NOT_PARSED``."""
    if kind is bool:
        low = raw.lower()
        return True if low in _TRUE else False if low in _FALSE else _NOT_PARSED
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            return _NOT_PARSED
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            return _NOT_PARSED
    if kind is str:
        return raw
    return _NOT_PARSED


def _bounded(r: Interval | None) -> bool:
    return r is not None and r.low is not None and r.high is not None


def _accepts(option: Option, kind: Any, value: Any) -> tuple[bool, Any]:
    if kind is bool:
        return (isinstance(value, bool) or type(value).__name__ == "bool_"), bool(value)
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False, None
        if kind is int and not isinstance(value, numbers.Integral):
            return False, None
        x = float(value)
        if math.isnan(x) or (option.finite and math.isinf(x)):
            return False, None
        if option.range is not None and x not in option.range:
            return False, None
        return True, (int(value) if kind is int else x)
    if kind is str:
        if not isinstance(value, str) or (option.choices is not None and value not in option.choices):
            return False, None
        return True, value
    if kind is callable:
        return callable(value) and not isinstance(value, type), value
    return isinstance(value, kind), value


def declare_options(*options: Option) -> Callable[[Callable], Callable]:
    """Attach ``options`` to a function and check every call's keyword options against them.

    Each option must be a keyword-only parameter of the function whose default is itself valid (checked once,
    here). A keyword the function does not take raises :class:`InputError` listing the ones it does. The
    wrapper keeps the function's name, docstring and signature (``functools.wraps``).
    """

    def decorate(fn: Callable) -> Callable:
        params = inspect.signature(fn).parameters
        declared = {}
        for option in options:
            param = params.get(option.name)
            if param is None or param.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"{fn.__qualname__}: declared option {option.name!r} is not a keyword-only parameter")
            if param.default is not inspect.Parameter.empty:
                option.check(param.default, where=f"{fn.__qualname__}: default of ")
            declared[option.name] = option
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        keywords = {n for n, p in params.items() if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
        required = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty]

        @functools.wraps(fn)
        def checked(*args, **kwargs):
            for name, value in kwargs.items():
                option = declared.get(name)
                if option is not None:
                    kwargs[name] = option.check(value)
                elif not takes_any and name not in keywords:
                    raise InputError(f"{fn.__name__} has no option {name!r}; it takes: {', '.join(sorted(keywords))}")
            missing = [n for n in required if n not in kwargs]
            if missing:
                raise InputError(f"{fn.__name__} needs {', '.join(missing)} (keyword argument)")
            return fn(*args, **kwargs)

        checked.__pairkit_options__ = tuple(options)
        # read here, once, for what a spec shows (``pairkit rank --list-models``): nothing reads signatures later
        checked.__pairkit_defaults__ = {o.name: params[o.name].default for o in options
                                        if params[o.name].default is not inspect.Parameter.empty}
        checked.__pairkit_unchecked__ = fn
        return checked

    return decorate


def unchecked(fn: Callable) -> Callable:
    """``fn`` without the per-call option check of :func:`declare_options` (``fn`` itself when it has none), for a
    caller whose options were already checked once."""
    return getattr(fn, "__pairkit_unchecked__", fn)


def options_of(fn: Callable) -> tuple[Option, ...]:
    """The options :func:`declare_options` attached to ``fn`` (empty when none were declared)."""
    return getattr(fn, "__pairkit_options__", ())


@dataclass(frozen=True)
class Input:
    """One tensor input of a registered callable.

    ``kind`` says what it holds, from a small vocabulary shared by producers (trainers, builders in tests):
    ``"logps"`` (sequence log-probabilities), ``"token_logps"``, ``"token_mask"``, ``"lengths"``, ``"logits"``,
    ``"token_logits"``, ``"classes"`` (class indices), ``"binary"``, ``"grades"`` (relevance labels), ``"outcomes"``
    (1 / 0 / 0.5 for a tie), ``"stds"``, ``"rewards"``,
    ``"scores"``, ``"embeddings"``, ``"probs"``, ``"log_probs"``, ``"margins"``, … ``shape``
    names its dimensions (``"[batch]"``, ``"[batch, list]"``, ``"[batch, T]"``). ``keyword`` inputs are passed
    by name after the positional ones; ``required=False`` ones may be left out.
    """

    name: str
    kind: str
    shape: str = "[batch]"
    required: bool = True
    keyword: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Spec:
    """A registered callable and what it declares.

    ``kind``: ``"rating model"``, ``"loss"`` or ``"strategy"``. ``data``: the kind of data it takes
    (``"comparisons"``, ``"rankings"``, ``"pairwise log-probabilities"``, …). ``inputs``: the names of its
    positional inputs. ``input_specs``: its tensor inputs as :class:`Input` (positional and keyword); when
    given, ``inputs`` defaults to the names of the positional ones. ``options``: its declared keyword options
    (by default those attached with :func:`declare_options`). ``batch_coupled``: a loss whose value for one
    example depends on the others in the batch (so gradient accumulation over micro-batches changes the
    objective). ``keywords``: the keyword arguments common to its kind that it accepts besides its inputs and
    options (for a loss: ``mask``, ``weights``, ``reduction``).
    """

    name: str
    fn: Callable
    kind: str
    data: str = ""
    inputs: tuple[str, ...] = ()
    input_specs: tuple[Input, ...] = ()
    options: tuple[Option, ...] = ()
    aliases: tuple[str, ...] = ()
    family: str = ""
    batch_coupled: bool = False
    keywords: tuple[str, ...] = ()
    summary: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_specs and not self.inputs:
            object.__setattr__(self, "inputs", tuple(i.name for i in self.input_specs if not i.keyword))
        if not self.options:
            object.__setattr__(self, "options", options_of(self.fn))
        if not self.summary:
            doc = inspect.getdoc(self.fn) or ""
            object.__setattr__(self, "summary", doc.strip().splitlines()[0] if doc.strip() else "")

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    @property
    def unchecked(self) -> Callable:
        """The function without the per-call option check of :func:`declare_options`, for a caller that checked
        its options once with :meth:`check` (a training loop calling the loss every step)."""
        return unchecked(self.fn)

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The default of each declared option that has one (read from the signature once, by
        :func:`declare_options`)."""
        return getattr(self.fn, "__pairkit_defaults__", {})

    def input(self, name: str) -> Input:
        """The declared :class:`Input` called ``name``."""
        for i in self.input_specs:
            if i.name == name:
                return i
        known = ", ".join(i.name for i in self.input_specs) or "none declared"
        raise InputError(f"{self.kind} {self.name!r} has no input {name!r}; its inputs: {known}")

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise InputError(self._unknown_message([name]))

    def takes(self, name: str) -> bool:
        return name in self.option_names

    def accepts(self, name: str) -> bool:
        """Whether ``name`` is a keyword it accepts: an option, an input or a common keyword (``keywords``)."""
        return name in self.option_names or name in self.keywords or any(i.name == name for i in self.input_specs)

    def check(self, values: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
        """Check options by name; unknown names raise :class:`InputError` listing the accepted ones."""
        self.check_names(values, where=where)
        return {k: self.option(k).check(v, where=where) for k, v in values.items()}

    def check_names(self, values: Mapping[str, Any], *, where: str = "") -> None:
        """Raise :class:`InputError` listing the accepted options when ``values`` names one this spec lacks (the
        values themselves are checked by the function's :func:`declare_options` wrapper, once)."""
        unknown = [k for k in values if k not in self.option_names]
        if unknown:
            raise InputError(where + self._unknown_message(unknown))

    def parse_options(self, texts: Sequence[str], *, flag: str = "--option") -> dict[str, Any]:
        """``["k=32", "draw_probability=0"]`` → checked options (the command line's ``--option NAME=VALUE``).

        Each name must be one of this spec's declared options and each value valid for it (:meth:`Option.parse`);
        a name given twice, a missing ``=``, an unknown name or a bad value raise :class:`InputError` naming it.
        """
        out: dict[str, Any] = {}
        where = f"{self.kind} {self.name!r}: {flag} "
        for text in texts:
            name, eq, value = text.partition("=")
            name = name.strip().replace("-", "_")
            if not eq or not name:
                raise InputError(f"{where}expects NAME=VALUE, got {text!r}")
            if name in out:
                raise InputError(f"{where}{name} is given twice")
            if not self.takes(name):
                raise InputError(self._unknown_message([name]))
            out[name] = self.option(name).parse(value, where=where)
        return out

    def _unknown_message(self, names: list[str]) -> str:
        accepted = ", ".join(self.option_names) or "none"
        return f"{self.kind} {self.name!r} has no option(s) {', '.join(sorted(names))}; it accepts: {accepted}"


class Registry:
    """Specs of one kind by name, with aliases (peers' names) resolved to the canonical name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._specs: dict[str, Spec] = {}
        self._aliases: dict[str, str] = {}

    def add(self, spec: Spec, *, replace: bool = False) -> Spec:
        """Register ``spec``; a taken name or alias raises :class:`InputError` unless ``replace``."""
        if spec.kind != self.kind:
            raise InputError(f"a {spec.kind} spec cannot go into the {self.kind} registry")
        for name in (spec.name, *spec.aliases):
            owner = self._specs.get(name) or self._specs.get(self._aliases.get(name, ""))
            if owner is not None and owner.name != spec.name and not replace:
                raise InputError(f"{self.kind} name {name!r} is already registered (by {owner.name!r})")
        if spec.name in self._specs and not replace:
            raise InputError(f"{self.kind} name {spec.name!r} is already registered; pass replace=True to override")
        self._specs[spec.name] = spec
        for alias in spec.aliases:
            self._aliases[alias] = spec.name
        return spec

    def remove(self, name: str) -> Spec:
        """Unregister the spec under ``name`` (or an alias) and its aliases; returns it."""
        spec = self._specs.pop(self.canonical(name))
        for alias in spec.aliases:
            self._aliases.pop(alias, None)
        return spec

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        if name in self._specs:
            return name
        if name in self._aliases:
            return self._aliases[name]
        close = difflib.get_close_matches(name, [*self._specs, *self._aliases], n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InputError(f"unknown {self.kind} {name!r}{hint} (available: {', '.join(sorted(self._specs))})")

    def get(self, name: str) -> Spec:
        """The spec registered under ``name`` or an alias."""
        return self._specs[self.canonical(name)]

    def names(self, *, family: str | None = None, aliases: bool = False) -> list[str]:
        """Registered names (of one ``family``), sorted; with ``aliases=True`` the aliases too."""
        out = [n for n, s in self._specs.items() if family is None or s.family == family]
        if aliases:
            out += [a for a, n in self._aliases.items() if family is None or self._specs[n].family == family]
        return sorted(out)

    def specs(self) -> list[Spec]:
        return [self._specs[n] for n in sorted(self._specs)]

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs))

    def __len__(self) -> int:
        return len(self._specs)
