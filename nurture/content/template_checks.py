"""Validation of templates for `nurture validate`: every problem, with its file and line.

A static walk of the Jinja AST (the template and the layouts it extends, includes or
imports) finds undefined variables before any contact sees them; a render with the
sample contact then checks what only the output can tell (unsubscribe link, SMS length).
"""

from __future__ import annotations

from collections.abc import Mapping

import jinja2
from jinja2 import nodes

from nurture.content.rendering import TemplateCatalog, mentions_stop, non_gsm_characters
from nurture.errors import Problem, TemplateError

#: names Jinja binds by itself inside loops, macros, call blocks and blocks
_IMPLICIT_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
#: statements that pull another template in
_PULLS_IN = nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport
_UNSUBSCRIBE = "marketing email has no unsubscribe link ({{ links.unsubscribe }})"


def check(
    catalog: TemplateCatalog,
    channel: str,
    name: str,
    *,
    marketing: bool,
    max_sms_segments: int,
    stop_mention: Mapping[str, str] | None = None,
) -> list[Problem]:
    """All problems of one template in every configured locale, each reported once."""
    if name not in catalog.names(channel):
        try:
            catalog.resolve(channel, name, catalog.default_locale)
        except TemplateError as e:
            return [Problem(catalog.path(f"{channel}/{name}"), None, str(e))]
    walker = TemplateWalker(catalog)
    problems: list[Problem] = []
    for locale in catalog.locales:
        try:
            resolved = catalog.resolve_files(channel, name, locale)
        except TemplateError as e:
            problems.append(Problem(catalog.path(f"{channel}/{name}"), None, str(e)))
            continue
        static = [p for rel in resolved.files.values() for p in walker.problems(rel)]
        problems += static
        try:
            problems += _check_output(
                catalog, channel, name, locale, resolved.files, marketing=marketing,
                max_sms_segments=max_sms_segments, stop_mention=stop_mention,
            )
        except TemplateError as e:
            if not static:  # otherwise it is the render-time echo of a problem already listed
                cause = e.__cause__ or e
                primary = resolved.files.get("html") or resolved.files["txt"]
                path, line = catalog.locate(cause, primary)
                problems.append(
                    Problem(path, line, f"does not render with the sample contact: {cause}")
                )
    return list(dict.fromkeys(problems))


def _check_output(
    catalog: TemplateCatalog,
    channel: str,
    name: str,
    locale: str,
    files: Mapping[str, str],
    *,
    marketing: bool,
    max_sms_segments: int,
    stop_mention: Mapping[str, str] | None,
) -> list[Problem]:
    context = catalog.sample_context(locale)
    unsubscribe = context["links"]["unsubscribe"]
    if channel == "email":
        email = catalog.render_email(name, locale, context)
        problems = []
        if marketing and unsubscribe not in email.html:
            problems.append(Problem(catalog.path(files["html"]), None, _UNSUBSCRIBE))
        if marketing and "txt" in files and unsubscribe not in email.text:
            problems.append(Problem(catalog.path(files["txt"]), None, _UNSUBSCRIBE))
        return problems
    mentions = stop_mention or {}
    used = catalog.resolve(channel, name, locale)
    mention = mentions.get(used, mentions.get(catalog.default_locale)) if marketing else None
    sms = catalog.render_sms(name, locale, context, stop_mention=mention)
    path = catalog.path(files["txt"])
    problems = []
    if marketing and stop_mention is not None and not mentions_stop(sms.text):
        problems.append(Problem(path, None, f"marketing SMS has no STOP mention ({locale})"))
    if sms.segments > max_sms_segments:
        non_gsm = non_gsm_characters(sms.text)
        why = f", because of {non_gsm!r}" if non_gsm else ""
        problems.append(Problem(path, None, (
            f"SMS is {sms.segments} segments ({sms.encoding}{why}) with the sample contact"
            f"{' and STOP mention' if mention else ''}; the limit is {max_sms_segments}"
        )))
    return problems


class TemplateWalker:
    """Static analysis of template files, each parsed once per walker."""

    def __init__(self, catalog: TemplateCatalog) -> None:
        self.catalog = catalog
        self.environment = catalog.environment
        self._own: dict[str, list[Problem]] = {}
        self._references: dict[str, list[str]] = {}
        self._allowed = (
            set(catalog.known_attributes) | _IMPLICIT_NAMES | set(self.environment.globals)
        )

    def problems(self, relative: str) -> list[Problem]:
        """Problems of a file and of every template it extends, includes or imports."""
        found: list[Problem] = []
        todo, seen = [relative], set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if current not in self._own:
                self._own[current] = self._analyse(current)
            found += self._own[current]
            todo += self._references.get(current, [])
        return found

    def _analyse(self, relative: str) -> list[Problem]:
        path = self.catalog.path(relative)
        env = self.environment
        assert env.loader is not None
        try:
            source, _, _ = env.loader.get_source(env, relative)
            tree = env.parse(source, relative, path)
        except jinja2.TemplateNotFound:
            return [Problem(path, None, "template not found")]
        except jinja2.TemplateSyntaxError as e:
            return [Problem(path, e.lineno, f"syntax error: {e.message}")]
        problems = self._undefined(tree, path) + self._unknown_filters(tree, path)
        problems += self._follow(tree, relative, path)
        if not problems:
            try:  # compile-time checks Jinja does beyond parsing
                env.get_template(relative)
            except jinja2.TemplateSyntaxError as e:
                problems.append(Problem(path, e.lineno, e.message or str(e)))
        return sorted(problems, key=lambda p: p.line or 0)

    def _undefined(self, tree: nodes.Template, path: str) -> list[Problem]:
        bound = _locally_bound(tree)
        allowed = self._allowed | bound
        names = ", ".join(sorted(self.catalog.known_attributes))
        problems = [
            Problem(path, node.lineno, f"undefined variable {node.name!r} (known: {names})")
            for node in tree.find_all(nodes.Name)
            if node.ctx == "load" and node.name not in allowed
        ]
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            problem = self._unknown_attribute(node, bound, path)
            if problem is not None:
                problems.append(problem)
        return problems

    def _unknown_attribute(self, node: nodes.Node, bound: set[str], path: str) -> Problem | None:
        """`contact.nickname` or `links["unsub"]` on a context name that has no such field."""
        known = self.catalog.known_attributes
        if isinstance(node, nodes.Getattr):
            attr: str | None = node.attr
        elif isinstance(node, nodes.Getitem):
            key = node.arg
            attr = None
            if isinstance(key, nodes.Const) and isinstance(key.value, str):
                attr = key.value
        else:
            return None
        target = node.node
        if not (isinstance(target, nodes.Name) and target.ctx == "load"):
            return None
        if target.name not in known or target.name in bound or attr is None:
            return None
        if attr in known[target.name]:
            return None
        names = ", ".join(sorted(known[target.name]))
        return Problem(
            path, node.lineno, f"undefined variable '{target.name}.{attr}' (known: {names})"
        )

    def _unknown_filters(self, tree: nodes.Template, path: str) -> list[Problem]:
        problems = []
        for node in tree.find_all((nodes.Filter, nodes.Test)):
            kind, table = (
                ("filter", self.environment.filters) if isinstance(node, nodes.Filter)
                else ("test", self.environment.tests)
            )
            if node.name not in table:
                problems.append(Problem(path, node.lineno, f"unknown {kind} {node.name!r}"))
        return problems

    def _follow(self, tree: nodes.Template, relative: str, path: str) -> list[Problem]:
        """Record the templates this one pulls in; a missing one is a problem at its line."""
        references: list[str] = []
        problems: list[Problem] = []
        for node in tree.find_all(nodes.Stmt):
            if not isinstance(node, _PULLS_IN):
                continue
            target = node.template
            if not (isinstance(target, nodes.Const) and isinstance(target.value, str)):
                continue  # computed names can only be checked by rendering
            if (self.catalog.root / target.value).is_file():
                references.append(target.value)
            elif not getattr(node, "ignore_missing", False):
                problems.append(Problem(path, node.lineno, f"template {target.value!r} not found"))
        self._references[relative] = references
        return problems


def _locally_bound(tree: nodes.Template) -> set[str]:
    """Names the template binds itself (set, for, macro, import…), anywhere in the file."""
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    bound |= {n.name for n in tree.find_all(nodes.Macro)}
    bound |= {n.target for n in tree.find_all(nodes.Import)}
    for node in tree.find_all(nodes.FromImport):
        bound |= {n if isinstance(n, str) else n[1] for n in node.names}
    return bound
