"""``.. pairkit-registry:: KIND`` — a method table generated from pairkit's registries, so it cannot drift.

KIND is ``rating`` (rating models), ``strategies`` (selection strategies), ``curate`` (curation rules),
``judges`` (judge types of a judge configuration) or ``losses`` (with ``:family:``). Each
row links the registered name to the function's reference entry and shows its aliases, its declared options
(with their valid ranges), its one-line summary and the paper cited in its docstring. When the build ends, every
registered model, strategy and loss family must have appeared in some table, or the build warns (an error
under ``-W``).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

_PAPER = re.compile(r"[A-Z][^.()\n]*?(?:et al\.|&| and |[A-Za-z]) ?\(?(?:1[89]|20)\d\d[a-z]?\)?,?\s*[\"“][^\"”]+[\"”]")


@dataclass(frozen=True)
class Entry:
    name: str
    aliases: tuple[str, ...]
    fn: object
    options: tuple
    summary: str
    group: str


def _entries(specs, group: str | None = None) -> list[Entry]:
    return [Entry(s.name, tuple(s.aliases), s.fn, tuple(s.options), s.summary, group or s.family) for s in specs]


def _losses(family: str | None) -> list[Entry]:
    import pairkit.losses as losses

    return _entries(losses.specs(family))


def _rating() -> list[Entry]:
    import pairkit.rating as rating

    return _entries(rating.models(), "rating")


def _strategies() -> list[Entry]:
    from pairkit.select import strategies

    return _entries(strategies.STRATEGIES.specs(), "strategies")


def _curate() -> list[Entry]:
    import pairkit.curate as curate

    return _entries(curate.RULES.specs())


def _judges() -> list[Entry]:
    from pairkit.judges.config import JUDGES

    return _entries(JUDGES.specs())


def entries(kind: str, family: str | None = None) -> list[Entry]:
    if kind == "judges":
        return _judges()
    if kind == "curate":
        return _curate()
    if kind == "losses":
        return _losses(family)
    if kind == "rating":
        return _rating()
    if kind == "strategies":
        return _strategies()
    raise ValueError(f"unknown registry kind {kind!r}")


def all_groups() -> set[tuple[str, str | None]]:
    import pairkit.losses as losses

    fixed = {("rating", None), ("strategies", None), ("curate", None), ("judges", None)}
    return fixed | {("losses", s.family) for s in losses.specs()}


def _paper(fn) -> str:
    doc = " ".join((inspect.getdoc(fn) or "").split())
    match = _PAPER.search(doc)
    return match.group(0).strip() if match else "—"


def _target(fn) -> str:
    fn = inspect.unwrap(fn)
    return f"{fn.__module__}.{fn.__qualname__}"


def _exported(fn) -> bool:
    import importlib

    fn = inspect.unwrap(fn)
    module = importlib.import_module(fn.__module__)
    return fn.__name__ in getattr(module, "__all__", ())


def _option(o) -> str:
    rng = f" {o.range.describe()}" if getattr(o, "range", None) is not None else ""
    choices = f" ∈ {{{', '.join(map(str, o.choices))}}}" if getattr(o, "choices", None) else ""
    return f"``{o.name}``{rng}{choices}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "—"


class RegistryTable(SphinxDirective):
    required_arguments = 1
    option_spec = {"family": lambda x: x.strip()}

    def run(self):
        kind = self.arguments[0]
        family = self.options.get("family")
        rows = entries(kind, family)
        seen = self.env.__dict__.setdefault("pairkit_registry_rendered", set())
        seen.add((kind, family))
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 18 14 22 26 20", "",
                 "   * - name", "     - aliases", "     - options", "     - method", "     - paper"]
        for e in rows:
            lines += [
                f"   * - :{'class' if inspect.isclass(e.fn) else 'func'}:`{e.name} <{_target(e.fn)}>`",
                f"     - {_cell(', '.join(f'``{a}``' for a in e.aliases))}",
                f"     - {_cell('; '.join(_option(o) for o in e.options))}",
                f"     - {_cell(e.summary)}",
                f"     - {_cell(_paper(e.fn))}",
            ]
        # Registered callables that their module does not export get their reference entry here.
        unexported = {_target(e.fn) for e in rows if not _exported(e.fn)}
        for target in sorted(unexported):
            lines += ["", f".. autofunction:: {target}"]
        container = StringList(lines, source=f"<pairkit-registry {kind} {family or ''}>")
        from docutils import nodes

        node = nodes.container()
        self.state.nested_parse(container, self.content_offset, node)
        return node.children


def _check_coverage(app, env) -> None:
    rendered = env.__dict__.get("pairkit_registry_rendered", set())
    for group in sorted(all_groups() - rendered, key=str):
        kind, family = group
        logger.warning(f"registry {kind}{'/' + family if family else ''} has no page with a pairkit-registry table")


def _defined_at(target: str) -> str | None:
    """Where a re-exported name (``pairkit.rating.fit_bradley_terry``) is defined, by importing it."""
    import importlib

    if not target.startswith("pairkit."):
        return None
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        obj = inspect.unwrap(obj) if callable(obj) else obj
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        return f"{module}.{qualname}" if module and qualname else None
    return None


def _resolve_short_names(app, env, node, contnode):
    """Resolve ``:class:`Comparisons``` written inside any pairkit module to the one documented object of that name.

    Docstrings name objects as their module imports them; Sphinx only looks in the current module, so a reference
    that matches exactly one documented pairkit object by its last dotted parts resolves to it. Ambiguous or unknown
    names stay unresolved (and fail a ``-W`` build).
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    defined = _defined_at(target)
    if defined in domain.objects:
        matches = [defined]
    else:
        suffix = "." + target
        matches = [name for name in domain.objects if name.endswith(suffix) and name.startswith("pairkit.")]
    if len(matches) != 1:
        return None
    obj = domain.objects[matches[0]]
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, matches[0])


def setup(app):
    app.add_directive("pairkit-registry", RegistryTable)
    app.connect("env-check-consistency", _check_coverage)
    app.connect("missing-reference", _resolve_short_names)
    return {"version": "1", "parallel_read_safe": False}
