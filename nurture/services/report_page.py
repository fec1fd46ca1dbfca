"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, no
font, no image, no link out — it opens from a file with no network (`nurture report
--html`) and is what `/admin/report` serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from nurture.services import charts
from nurture.services.report import CONVERSIONS, FUNNEL, MESSAGE_FIGURES

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1400px}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
.meta{color:#666} .charts{display:flex;flex-wrap:wrap;gap:2rem;align-items:flex-start}
table{border-collapse:collapse;margin:.8rem 0;font-size:.8rem}
th,td{border:1px solid #ddd;padding:.2rem .4rem;text-align:right}
td.text{text-align:left} th{background:#f4f4f4;text-align:center}
.muted{color:#999} .scroll{overflow-x:auto} td.text{white-space:pre}
"""
_LABELS = {"entered": "entered", "sent": "sent a message", "opened": "opened",
           "clicked": "clicked",
           "replied": "replied", "goal_reached": "goal reached"}


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


#: long headers may break (a soft hyphen) so wide tables fit a laptop screen
_HEADERS = {"unsubscribed": "unsub\u00adscribed", "delivered": "deliv\u00adered",
            "messages": "mes\u00adsages"}


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], css: str = "") -> str:
    head = "".join(f"<th>{_e(_HEADERS.get(h, h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"text" if isinstance(v, str) else ""}">{_e(v)}</td>'
                         for v in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{_e(css)}"><tr>{head}</tr>{body}</table></div>'


def _reasons(found: Mapping[str, int]) -> str:
    return "\n".join(f"{reason} {count}" for reason, count in sorted(found.items()))


def _contacts(report: Mapping[str, Any]) -> str:
    contacts = report["contacts"]
    return ('<h2>Contacts today</h2><div class="charts">'
            + charts.hbars("stages", "Contacts by stage", list(contacts["by_stage"].items()))
            + charts.hbars("temperatures", "Contacts by temperature",
                           list(contacts["by_temperature"].items()))
            + "</div>")


def _conversions(report: Mapping[str, Any]) -> str:
    conv = report["conversions"]
    weeks = conv["weeks"]
    series = [("new contacts", [w["new_contacts"] for w in weeks]),
              *((f"→ {stage}", [w[stage] for w in weeks]) for stage in CONVERSIONS)]
    median = conv["median_days_to_qualify"]
    summary = (f"{conv['qualified']} contact(s) qualified; median time to qualify: "
               f"{median} day(s)" if median is not None else "No contact qualified yet.")
    rows = [[w["week"], w["new_contacts"], *(w[s] for s in CONVERSIONS),
             "" if w["median_days_to_qualify"] is None else w["median_days_to_qualify"]]
            for w in weeks]
    return ("<h2>Conversions per week</h2>"
            + charts.weekly_bars("conversions", "Lead → prospect → customer, per week",
                                 [w["week"] for w in weeks], series)
            + f'<p class="summary">{_e(summary)}</p>'
            + _table(["week of", "new contacts", *(f"→ {s}" for s in CONVERSIONS),
                      "median days to qualify"], rows, "conversions"))


_STEP_HEADERS = ["step", "type", "template", "entered", *MESSAGE_FIGURES, "skipped by reason",
                 "goal reached", "here now"]


def _journey(journey: Mapping[str, Any]) -> str:
    funnel = [(_LABELS[stage], journey["funnel"][stage]) for stage in FUNNEL]
    ended = _reasons(journey["ended"]).replace("\n", ", ") or "none"
    rows = [[s["step"], s["type"], s["template"] or "", s["entered"],
             *(s[name] for name in MESSAGE_FIGURES), _reasons(s["skipped_by_reason"]),
             s["goal_reached"], s["here_now"]] for s in journey["steps"]]
    missing = "" if journey["applied"] else ' <span class="muted">(not applied now)</span>'
    return (f'<section class="journey" data-journey="{_e(journey["id"])}">'
            f"<h3>{_e(journey['name'])} <code>{_e(journey['id'])}</code>{missing}</h3>"
            f'<p class="meta">live now: {journey["live"]}; ended: {_e(ended)}</p>'
            + charts.hbars("funnel", f"Funnel: {journey['name']}", funnel,
                           percent_of_first=True, journey=journey["id"])
            + _table(_STEP_HEADERS, rows, "steps") + "</section>")


def _templates(report: Mapping[str, Any]) -> str:
    rows = report["templates"]
    keys = [k for k in ("channel", "template", "variant") if rows and k in rows[0]]
    body = [[*(r[k] if r[k] is not None else "" for k in keys), r["contacts"],
             *(r[name] for name in MESSAGE_FIGURES)] for r in rows]
    return ("<h2>Templates</h2>"
            + _table([*keys, "contacts", *MESSAGE_FIGURES], body, "templates"))


def render(report: Mapping[str, Any]) -> str:
    """The whole page."""
    scope = [f"generated {report['generated_at']}"]
    if report["since"]:
        scope.append(f"since {report['since']}")
    if report["journey"]:
        scope.append(f"journey {report['journey']}")
    skipped = sorted(report["skipped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    journeys = "".join(_journey(j) for j in report["journeys"]) or "<p>No journey yet.</p>"
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>nurture report</title><style>{_CSS}</style></head><body>"
            f"<h1>nurture report</h1><p class=\"meta\">{_e('; '.join(scope))}</p>"
            + _contacts(report) + _conversions(report)
            + "<h2>Journeys</h2>" + journeys
            + "<h2>Skipped sends</h2>"
            + charts.hbars("skip-reasons", "Skipped sends by reason", skipped)
            + _templates(report) + "</body></html>")
