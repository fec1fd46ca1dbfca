"""Validation of templates for `nurture validate`: every problem, with its file and line.

A static walk of the Jinja AST (the template and the layouts it extends, includes or
imports) finds undefined variables before any contact sees them, and attributes printed
with no fallback ("Thanks for joining, !"); a render with the sample contact then checks
what only the output can tell (unsubscribe link, SMS length, also with a name outside
GSM-7), and each template is looked for in every declared locale.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import jinja2
from jinja2 import nodes

from nurture.content.rendering import (
    ResolvedTemplate,
    TemplateCatalog,
    mentions_stop,
    non_gsm_characters,
)
from nurture.errors import Problem, TemplateError

#: names Jinja binds by itself inside loops, macros, call blocks and blocks
_IMPLICIT_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
#: statements that pull another template in
_PULLS_IN = nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport
_UNSUBSCRIBE = "marketing email has no unsubscribe link ({{ links.unsubscribe }})"
#: filters that give an empty value something to show
_FALLBACK_FILTERS = frozenset({"default", "d"})
#: the name the issue was found with: 'ô' is outside GSM-7, so the SMS switches to UCS-2
NON_GSM_FIRST_NAME = "Jérôme"


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
            if channel == "sms":
                mention = _mention(catalog, resolved.locale, stop_mention, marketing)
                problems += _check_non_gsm(catalog, walker, name, locale, resolved.files["txt"],
                                           mention=mention, max_sms_segments=max_sms_segments)
        except TemplateError as e:
            # otherwise it is the render-time echo of a problem already listed
            if not any(p.is_error for p in static):
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
    mention = _mention(catalog, catalog.resolve(channel, name, locale), stop_mention, marketing)
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


def missing_translations(catalog: TemplateCatalog, channel: str, name: str) -> list[str]:
    """One sentence per declared locale that falls back to another language's file.

    Unlocalized files (`email/x.html`) are written for every locale: nothing is missing.
    A template missing altogether is `check`'s business, not this one's.
    """
    found: list[str] = []
    for locale in catalog.locales:
        try:
            resolved = catalog.resolve_files(channel, name, locale)
        except TemplateError:
            continue
        if not _localized(resolved) or _language(resolved.locale) == _language(locale):
            continue
        wanted = " and ".join(f"{catalog.root.name}/{_relocalized(rel, resolved.locale, locale)}"
                              for rel in resolved.files.values())
        found.append(f"{channel} template '{name}' has no '{locale}' version: contacts in "
                     f"'{locale}' get the '{resolved.locale}' one (add {wanted})")
    return found


def _localized(resolved: ResolvedTemplate) -> bool:
    return any(rel.endswith(f".{resolved.locale}.{part}") for part, rel in resolved.files.items())


def _relocalized(relative: str, used: str, wanted: str) -> str:
    head, _, part = relative.rpartition(".")
    return f"{head.removesuffix('.' + used)}.{wanted}.{part}"


def _language(locale: str) -> str:
    return locale.replace("_", "-").split("-")[0].lower()


def _mention(catalog: TemplateCatalog, used: str, stop_mention: Mapping[str, str] | None,
             marketing: bool) -> str | None:
    """The STOP mention a marketing SMS in locale `used` gets appended (none: not marketing)."""
    mentions = stop_mention or {}
    return mentions.get(used, mentions.get(catalog.default_locale)) if marketing else None


def _check_non_gsm(
    catalog: TemplateCatalog,
    walker: TemplateWalker,
    name: str,
    locale: str,
    txt: str,
    *,
    mention: str | None,
    max_sms_segments: int,
) -> list[Problem]:
    """An SMS within its budget for the sample contact may not be for a Jérôme: one
    character outside GSM-7 in a personalised field switches the whole text to UCS-2
    (70 characters a segment instead of 160)."""
    context = catalog.sample_context(locale)
    sample = context["contact"]
    overrides = {attribute: _non_gsm(attribute, sample[attribute])
                 for attribute in sorted(walker.attributes_used(txt))
                 if isinstance(sample.get(attribute), str)}
    if not overrides:
        return []
    plain = catalog.render_sms(name, locale, context, stop_mention=mention)
    if plain.segments > max_sms_segments or plain.encoding != "GSM-7":
        return []  # over the limit already, or UCS-2 by its own text: reported as it is
    sms = catalog.render_sms(name, locale, catalog.sample_context(locale, overrides),
                             stop_mention=mention)
    if sms.segments <= max_sms_segments:
        return []
    names = ", ".join(f"contact.{k} = {v!r}" for k, v in overrides.items())
    return [Problem(catalog.path(txt), None, (
        f"SMS is {sms.segments} segments ({sms.encoding}) for a contact with a name outside "
        f"GSM-7 ({names}); the limit is {max_sms_segments}, so such contacts get no SMS "
        "(too_long): shorten the text"), Problem.WARNING)]


def _non_gsm(attribute: str, sample: str) -> str:
    """The sample value with a character outside GSM-7 ('ô'), as real names have."""
    if attribute == "first_name":
        return NON_GSM_FIRST_NAME
    return sample.replace("o", "ô", 1) if "o" in sample else f"{sample}ô"


class TemplateWalker:
    """Static analysis of template files, each parsed once per walker."""

    def __init__(self, catalog: TemplateCatalog) -> None:
        self.catalog = catalog
        self.environment = catalog.environment
        self._own: dict[str, list[Problem]] = {}
        self._references: dict[str, list[str]] = {}
        #: file → the `contact.x` it reads
        self._used: dict[str, set[str]] = {}
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
        errors = bool(problems)
        bound = _locally_bound(tree)
        self._used[relative] = set() if "contact" in bound else _reads(tree)
        problems += self._unguarded(tree, path, bound)
        if not errors:
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

    def attributes_used(self, relative: str) -> set[str]:
        """Declared attributes a file and the templates it pulls in read on `contact`."""
        self.problems(relative)  # parses and follows them
        used: set[str] = set()
        todo, seen = [relative], set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            used |= self._used.get(current, set())
            todo += self._references.get(current, [])
        return used & set(self.catalog.attribute_names)

    def _unguarded(self, tree: nodes.Template, path: str, bound: set[str]) -> list[Problem]:
        """`{{ contact.first_name }}` with nothing for a contact who has none.

        Printing it inside `{% if contact.first_name %}`, after `or`, or through
        `| default(...)` is fine; printed bare, an empty attribute makes "Thanks for
        joining, !" (and a missing number prints None).
        """
        if "contact" in bound:  # a loop or `set` rebinds it: not the contact any more
            return []
        attributes = set(self.catalog.attribute_names)
        return [
            Problem(path, line, (
                f"{{{{ contact.{attribute} }}}} prints nothing for a contact without "
                f"{attribute}: write {{{{ contact.{attribute} | default('...') }}}} or put it "
                f"inside {{% if contact.{attribute} %}}...{{% endif %}}"), Problem.WARNING)
            for line, attribute in _bare_outputs(tree, frozenset())
            if attribute in attributes
        ]

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


# ---- attributes printed bare -------------------------------------------------------------


def _contact_attribute(node: nodes.Node) -> str | None:
    """`contact.x` or `contact["x"]` → "x"."""
    target = getattr(node, "node", None)
    if not (isinstance(target, nodes.Name) and target.name == "contact" and target.ctx == "load"):
        return None
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)):
        return node.arg.value
    return None


def _reads(node: nodes.Node) -> set[str]:
    """Every `contact.x` read anywhere in `node`."""
    found = {_contact_attribute(n) for n in node.find_all((nodes.Getattr, nodes.Getitem))}
    own = _contact_attribute(node)
    return {a for a in (*found, own) if a is not None}


def _shown(expr: nodes.Node) -> set[str]:
    """Attributes whose own value `expr` prints (none when a fallback stands in for it)."""
    own = _contact_attribute(expr)
    if own is not None:
        return {own}
    if isinstance(expr, nodes.Filter):
        return set() if expr.name in _FALLBACK_FILTERS or expr.node is None else _shown(expr.node)
    if isinstance(expr, nodes.Or):  # `a or 'there'`: only the fallback can be printed bare
        return _shown(expr.right)
    if isinstance(expr, nodes.Concat):
        return {a for item in expr.nodes for a in _shown(item)}
    if isinstance(expr, nodes.CondExpr):
        otherwise = _shown(expr.expr2) if expr.expr2 is not None else set()
        return (_shown(expr.expr1) - _reads(expr.test)) | otherwise
    return set()


def _bare_outputs(node: nodes.Node, guarded: frozenset[str]) -> Iterator[tuple[int, str]]:
    """(line, attribute) of each attribute printed outside a test of that attribute."""
    if isinstance(node, nodes.If):
        tested = frozenset(_reads(node.test))
        negated = tested if isinstance(node.test, nodes.Not) else frozenset()
        for child in node.body:
            yield from _bare_outputs(child, guarded | (tested - negated))
        for branch in node.elif_:
            yield from _bare_outputs(branch, guarded | negated)
        for child in node.else_:
            yield from _bare_outputs(child, guarded | negated)
        return
    if isinstance(node, nodes.Output):
        for item in node.nodes:
            for attribute in sorted(_shown(item) - guarded):
                yield item.lineno, attribute
        return
    for child in node.iter_child_nodes():
        yield from _bare_outputs(child, guarded)

