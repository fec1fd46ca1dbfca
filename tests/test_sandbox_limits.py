"""The template sandbox's budget: each template bomb fails its own render in well under a
second of CPU and without allocating its gigabyte; `validate` reports it at path:line;
in the daemon it costs its contact's message, not the batch."""

from __future__ import annotations

import resource
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest
from jinja2.exceptions import SecurityError

from nurture.content.budget import MAX_STEPS
from nurture.content.rendering import TemplateCatalog
from nurture.engine.runtime import Runtime
from nurture.engine.tick import tick
from nurture.errors import TemplateError
from nurture.services.validate import validate_project
from tests.conftest import write_project
from tests.fakes import add_contact, enrollments, messages

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Paris

#: name → a template line that, unbounded, takes ~1 GB or runs for hours
BOMBS = {
    # the ones found against main
    "ljust": "{{ 'x'.ljust(10**9) }}",
    "center": "{{ 'x'|center(10**9) }}",
    "printf": "{{ '%1000000000s' % 'x' }}",
    "format": "{{ '{:>1000000000}'.format('x') }}",
    "loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "lipsum": "{{ lipsum(n=100000) }}",
    # their cousins
    "nested-width": "{{ '{:>{}}'.format('x', 10**9) }}",
    "filtered-loop": "{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}"
                     "{% endfor %}{% endfor %}",
    "doubling": "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
                "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "list-of-big": "{% set s = 'x' * 100000 %}{{ ([s] * 100000)|join }}",
    "nested-literals": "{% set s = 'x' * 100000 %}{% set a = [s, s, s, s, s, s, s, s, s, s] %}"
                       "{% set b = [a, a, a, a, a, a, a, a, a, a] %}{{ [b, b, b, b] }}",
    "join": "{{ ('x' * 100000).join('y' * 100000) }}",
    "replace": "{{ ('x' * 100000)|replace('', 'y' * 100000) }}",
    "map": "{{ range(100000)|map('center', 99999)|list|length }}",
    "binary-macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                    "{% endmacro %}{{ f(40) }}",
    "bigint": "{% set ns = namespace(x=3) %}{% for i in range(40) %}"
              "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}",
    "slices": "{% set s = 'x' * 100000 %}{% set ns = namespace(l=[]) %}"
              "{% for i in range(100000) %}{% set ns.l = [ns.l, s[i:]] %}{% endfor %}",
    "literal-text": "{% macro m() %}{% for i in range(100000) %}" + "0123456789" * 1000
                    + "{% endfor %}{% endmacro %}{{ m()|length }}",
    "batch": "{{ [1]|batch(10**9, 'x')|list|length }}",
}
FOUND_ON_MAIN = ("ljust", "center", "printf", "format", "loops", "lipsum")


@dataclass
class Spent:
    cpu: float = 0.0
    #: growth of the process's peak resident size, in MB
    peak_mb: float = 0.0


@contextmanager
def measured(limit_seconds: float = 30.0) -> Iterator[Spent]:
    """CPU time and peak memory growth of the block. A runaway render is interrupted
    after `limit_seconds` of CPU time, so that a regression fails instead of hanging."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still rendering after {limit_seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, interrupt)
    signal.setitimer(signal.ITIMER_PROF, limit_seconds)
    spent = Spent()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    try:
        yield spent
    finally:
        spent.cpu = time.process_time() - started
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
        spent.peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024


def sms_catalog(root: Path, templates: dict[str, str]) -> TemplateCatalog:
    for name, source in templates.items():
        path = root / "sms" / f"{name}.en.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return TemplateCatalog(root, default_locale="en", locales=["en"])


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_template_bomb_fails_its_render_in_well_under_a_second(tmp_path: Path,
                                                                   name: str) -> None:
    catalog = sms_catalog(tmp_path, {name: "Hi {{ contact.email }}\n" + BOMBS[name] + "\n"})
    with measured() as spent, pytest.raises(TemplateError) as failure:
        catalog.render_sms(name, "en", catalog.sample_context("en"))
    # path:line of the bomb, and why
    assert str(failure.value).startswith(f"{tmp_path}/sms/{name}.en.txt:2: SecurityError: ")
    assert isinstance(failure.value.__cause__, SecurityError)
    assert spent.cpu < 1.0, spent
    assert spent.peak_mb < 200, spent


def test_the_messages_say_what_ran_over(tmp_path: Path) -> None:
    catalog = sms_catalog(tmp_path, {name: BOMBS[name] for name in FOUND_ON_MAIN})
    context = catalog.sample_context("en")
    expected = {
        "ljust": "ljust() would build 1000000000 characters or items; the limit is 1000000",
        "center": "|center would build 1000000000 characters",
        "printf": "% would build 1000000013 characters",
        "format": "format() would build 1000000000 characters",
        "loops": f"the template takes more than {MAX_STEPS} steps (loop iterations, calls, "
                 "filters) in one render",
        "lipsum": "lipsum(n=100000, max=100) asks for more than 10000 words",
    }
    for name, message in expected.items():
        with pytest.raises(TemplateError, match=r":1: SecurityError: ") as failure:
            catalog.render_sms(name, "en", context)
        assert message in str(failure.value)


def test_reasonable_templates_are_well_within_the_budget(tmp_path: Path) -> None:
    source = """{% macro row(i) %}{{ '%5d'|format(i) }} {{ ('item ' ~ i)|upper|center(20) }}
{% endmacro %}{% set ns = namespace(total=0) %}{% for i in range(2000) %}{{ row(i) }}
{%- set ns.total = ns.total + i %}{% endfor %}{{ 'x'.ljust(3, '.') }}{{ '{:>6}'.format(42) }}
{{ ns.total }} {{ lipsum(2, html=False)|wordcount > 10 }} {{ ([1, 2] * 3)|join(',') }}"""
    catalog = sms_catalog(tmp_path, {"big": source})
    text = catalog.render_sms("big", "en", catalog.sample_context("en")).text
    assert "ITEM 1999" in text and "x..    42" in text
    assert text.endswith(f"{sum(range(2000))} True 1,2,1,2,1,2")


def test_the_budget_is_per_render_not_per_catalog(tmp_path: Path) -> None:
    steps = MAX_STEPS * 3 // 5  # two renders together would be over
    catalog = sms_catalog(tmp_path, {"busy": f"{{% for i in range({steps}) %}}{{% endfor %}}ok"})
    for _ in range(3):
        assert catalog.render_sms("busy", "en", catalog.sample_context("en")).text == "ok"


def test_a_template_rendered_without_the_catalog_is_bounded_too(tmp_path: Path) -> None:
    environment = sms_catalog(tmp_path, {}).environment
    with measured() as spent, pytest.raises(SecurityError, match="steps"):
        environment.from_string(BOMBS["loops"]).render()
    assert spent.cpu < 1.0, spent


# ---- validate ---------------------------------------------------------------------------


def test_validate_reports_each_bomb_at_its_line_instead_of_hanging(tmp_path: Path) -> None:
    config = write_project(tmp_path / "project")
    templates = config.parent / "templates" / "sms" / "bomb"
    templates.mkdir()
    for name in FOUND_ON_MAIN:
        (templates / f"{name}.en.txt").write_text(f"Hi\n{BOMBS[name]}\n", encoding="utf-8")
    with measured(limit_seconds=60) as spent:
        problems = validate_project(config)
    reported = {Path(p.path).name: p for p in problems if "/sms/bomb/" in p.path and p.is_error}
    assert sorted(reported) == sorted(f"{name}.en.txt" for name in FOUND_ON_MAIN)
    for problem in reported.values():
        assert problem.is_error and problem.line == 2, problem
        assert problem.message.startswith("does not render with the sample contact: "), problem
        assert any(why in problem.message for why in ("would build", "steps", "words")), problem
    assert spent.cpu < 2.0 * len(FOUND_ON_MAIN), spent


# ---- the daemon -------------------------------------------------------------------------

SERIES = """
id: series
name: Series
purpose: newsletter
entry: { when: "stage == 'lead'" }
steps:
  - { id: first, type: send, channel: email, template: test/greeting }
"""


def test_a_bomb_costs_its_contact_a_message_not_the_batch(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime("", {"series": SERIES})
    email = rt.settings.templates_path / "email" / "test"
    email.mkdir(parents=True)
    (email / "greeting.en.subject").write_text("Hello", encoding="utf-8")
    (email / "greeting.en.html").write_text(
        "<p>Hello</p>\n{% if contact.email.startswith('bomb') %}"
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        "{% endif %}<a href=\"{{ links.unsubscribe }}\">Unsubscribe</a>", encoding="utf-8")
    bomb = add_contact(rt, NOW, "bomb@example.com", locale="en")
    fine = add_contact(rt, NOW, "camille@example.com", locale="en")
    with measured() as spent:
        tick(rt, NOW)
    assert spent.cpu < 5.0, spent
    [sent] = messages(rt, fine)
    assert sent["state"] == "sent"
    [skipped] = messages(rt, bomb)
    assert (skipped["state"], skipped["skip_reason"]) == ("skipped", "render_error")
    assert "greeting.en.html:2: SecurityError: the template takes more than" in skipped["error"]
    [enrollment] = enrollments(rt, bomb)
    assert enrollment["state"] in ("failed", "blocked"), enrollment
