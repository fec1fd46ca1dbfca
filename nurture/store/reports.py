"""The report's queries (`nurture report`, `nurture status`, `/admin/report`): every figure
is counted by the database (GROUP BY), never row by row in Python.

Message outcomes come from two places: the message row (its state, `sent_at`) and the
events tied to it through `event.message_id` (delivered, opened, clicked, replied,
unsubscribed, bounced). `_outcomes` folds a message's events into one row of 0/1 flags,
so a message opened five times counts once, and every grouping below joins that one
subquery. Groupings are lists of `message` column names: a column added to `message`
later (a template `variant`) groups like any other (`template_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    String,
    and_,
    case,
    cast,
    distinct,
    extract,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.selectable import Subquery

from nurture.store import database as db
from nurture.vocab import LIVE_ENROLLMENT_STATES, EventType, MessageKind, MessageState

#: the end reason of an enrollment that left because its journey's goal held
GOAL_REACHED = "goal reached"
#: reply intents that are not a person talking (see `intake.reply_effects`)
CARRIER_INTENTS = ("opt_out", "opt_in", "help")
#: per-message outcome flags, in the order reports show them
OUTCOMES = ("sent", "delivered", "opened", "clicked", "replied", "unsubscribed", "bounced")
#: the message figures of every grouping
MESSAGE_FIGURES = ("messages", *OUTCOMES, "failed", "skipped")
#: the per-journey funnel: enrollments reaching each stage
FUNNEL = ("entered", "sent", "opened", "clicked", "replied", "goal_reached")

_E = EventType
_TRACKED = (_E.EMAIL_DELIVERED, _E.SMS_DELIVERED, _E.EMAIL_OPENED, _E.EMAIL_CLICKED,
            _E.REPLY_RECEIVED, _E.EMAIL_UNSUBSCRIBED, _E.EMAIL_BOUNCED)
_GONE_OUT = (MessageState.SENT, MessageState.DELIVERED, MessageState.BOUNCED)
#: step-run kinds that are no step of the journey (see `engine.executor.trace_row`)
_NOT_A_STEP = ("entry", "end", "operator")
#: exits that happen before a step runs: its goal or exit condition held
_LEFT_BEFORE = (GOAL_REACHED, "exit condition")


@dataclass(frozen=True)
class Scope:
    """What a report covers: messages and enrollments since `since`, one journey or all."""

    since: datetime | None = None
    journey: str | None = None


def _flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.max(case((condition, 1), else_=0))


def _outcomes() -> Subquery:
    """One row per message that has tracked events: 0/1 per outcome."""
    e = db.event_t
    intent = func.coalesce(e.c.properties["intent"].as_string(), "")
    reply = e.c.type == _E.REPLY_RECEIVED
    return (select(
        e.c.message_id,
        _flag(e.c.type.in_((_E.EMAIL_DELIVERED, _E.SMS_DELIVERED))).label("delivered"),
        _flag(e.c.type == _E.EMAIL_OPENED).label("opened"),
        _flag(e.c.type == _E.EMAIL_CLICKED).label("clicked"),
        _flag(and_(reply, intent.not_in(CARRIER_INTENTS))).label("replied"),
        _flag(or_(e.c.type == _E.EMAIL_UNSUBSCRIBED,
                  and_(reply, intent == "opt_out"))).label("unsubscribed"),
        _flag(e.c.type == _E.EMAIL_BOUNCED).label("bounced"),
    ).where(e.c.message_id.is_not(None), e.c.type.in_(_TRACKED))
        .group_by(e.c.message_id).subquery("outcome"))


def _conditions(o: Subquery) -> dict[str, ColumnElement[bool]]:
    """Outcome → whether a message (joined to its outcome row) had it."""
    m = db.message
    return {
        "sent": or_(m.c.sent_at.is_not(None), m.c.state.in_(_GONE_OUT)),
        "delivered": or_(o.c.delivered == 1, m.c.state == MessageState.DELIVERED),
        "opened": o.c.opened == 1,
        "clicked": o.c.clicked == 1,
        "replied": o.c.replied == 1,
        "unsubscribed": o.c.unsubscribed == 1,
        "bounced": or_(o.c.bounced == 1, m.c.state == MessageState.BOUNCED),
    }


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _message_filter(stmt: Select[Any], scope: Scope) -> Select[Any]:
    m = db.message
    if scope.since is not None:
        stmt = stmt.where(m.c.created_at >= scope.since)
    if scope.journey is not None:
        stmt = stmt.where(m.c.journey_id == scope.journey)
    return stmt


def message_figures(conn: Connection, groupings: Mapping[str, Sequence[str]],
                    scope: Scope) -> dict[str, list[dict[str, Any]]]:
    """`MESSAGE_FIGURES`, with distinct contacts and enrollments (the sample sizes), per
    distinct value of each grouping's `message` columns; a grouping by `journey_id`
    covers journey messages only.

    One statement for every grouping: messages and their outcomes are read once (a CTE
    used more than once is materialized by SQLite and PostgreSQL), then grouped each way
    and the results stacked (UNION ALL: the GROUPING SETS SQLite lacks)."""
    m, o = db.message, _outcomes()
    met = _conditions(o)
    names = {"contact_id", "enrollment_id", "kind", "state"}
    names |= {k for keys in groupings.values() for k in keys}
    tagged = _message_filter(
        select(*(m.c[name] for name in sorted(names)),
               *(case((met[n], 1), else_=0).label(n) for n in OUTCOMES))
        .select_from(m.outerjoin(o, o.c.message_id == m.c.id)), scope).cte("tagged")
    width = max((len(keys) for keys in groupings.values()), default=0)
    figures = [func.count(distinct(tagged.c.contact_id)).label("contacts"),
               func.count(distinct(tagged.c.enrollment_id)).label("enrollments"),
               func.count().label("messages"),
               *(func.coalesce(func.sum(tagged.c[n]), 0).label(n) for n in OUTCOMES),
               _count_if(tagged.c.state == MessageState.FAILED).label("failed"),
               _count_if(tagged.c.state == MessageState.SKIPPED).label("skipped")]
    parts = []
    for name, keys in groupings.items():
        columns = [tagged.c[k] for k in keys]
        padded = [cast(c, String).label(f"k{i}") for i, c in enumerate(columns)]
        padded += [cast(null(), String).label(f"k{i}") for i in range(len(keys), width)]
        part = select(literal(name).label("grouping"), *padded, *figures).group_by(*columns)
        if "journey_id" in keys:
            part = part.where(tagged.c.kind == MessageKind.JOURNEY)
        parts.append(part)
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in groupings}
    if not parts:
        return found
    stacked = union_all(*parts).subquery("stacked")
    order = [stacked.c.grouping, *(stacked.c[f"k{i}"] for i in range(width))]
    for row in conn.execute(select(stacked).order_by(*order)).mappings():
        keys = groupings[row["grouping"]]
        found[row["grouping"]].append({**{k: row[f"k{i}"] for i, k in enumerate(keys)},
                                       **{f: row[f] for f in ("contacts", "enrollments",
                                                              *MESSAGE_FIGURES)}})
    return found


def template_keys() -> tuple[str, ...]:
    """How messages are grouped per template: by variant too once messages carry one."""
    return ("channel", "template", *(("variant",) if "variant" in db.message.c else ()))


def goals_by(conn: Connection, keys: Sequence[str], scope: Scope) -> list[dict[str, Any]]:
    """Per `message` columns `keys` (`template_keys`: per variant), the enrollments that
    had such a message and left on their journey's goal (`count`)."""
    m, en = db.message, db.enrollment
    columns = [m.c[k] for k in keys]
    stmt = (select(*columns, func.count(distinct(en.c.id)).label("count"))
            .select_from(m.join(en, en.c.id == m.c.enrollment_id))
            .where(en.c.end_reason == GOAL_REACHED)
            .group_by(*columns).order_by(*columns))
    return [dict(row) for row in conn.execute(_message_filter(stmt, scope)).mappings()]


def skip_reasons(conn: Connection, keys: Sequence[str], scope: Scope) -> list[dict[str, Any]]:
    """Skipped messages per `keys` and reason (`skip_reason` last in each row)."""
    m = db.message
    columns = [m.c[k] for k in (*keys, "skip_reason")]
    stmt = (select(*columns, func.count().label("count"))
            .where(m.c.state == MessageState.SKIPPED, m.c.skip_reason.is_not(None))
            .group_by(*columns).order_by(*columns))
    return [dict(row) for row in conn.execute(_message_filter(stmt, scope)).mappings()]


def _enrollment_filter(stmt: Select[Any], scope: Scope) -> Select[Any]:
    en = db.enrollment
    if scope.since is not None:
        stmt = stmt.where(en.c.entered_at >= scope.since)
    if scope.journey is not None:
        stmt = stmt.where(en.c.journey_id == scope.journey)
    return stmt


def funnels(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Per journey, how many enrollments (entered since `scope.since`) reached each
    `FUNNEL` stage: one sent message, one opened, one clicked, one replied, the goal."""
    en, m, o = db.enrollment, db.message, _outcomes()
    met = _conditions(o)
    messages = m.outerjoin(o, o.c.message_id == m.c.id)
    reached = (select(m.c.enrollment_id,
                      *(_flag(met[name]).label(name) for name in FUNNEL[1:-1]))
               .select_from(messages)
               .where(m.c.kind == MessageKind.JOURNEY, m.c.enrollment_id.is_not(None))
               .group_by(m.c.enrollment_id).subquery("reached"))
    stmt = (select(en.c.journey_id, func.count().label("entered"),
                   *(_count_if(reached.c[name] == 1).label(name) for name in FUNNEL[1:-1]),
                   _count_if(en.c.end_reason == GOAL_REACHED).label("goal_reached"))
            .select_from(en.outerjoin(reached, reached.c.enrollment_id == en.c.id))
            .group_by(en.c.journey_id).order_by(en.c.journey_id))
    return [dict(row) for row in conn.execute(_enrollment_filter(stmt, scope)).mappings()]


def enrollments_by(conn: Connection, keys: Sequence[str], scope: Scope, *,
                   live: bool | None = None, end_reason: str | None = None
                   ) -> list[dict[str, Any]]:
    """Enrollments (entered since `scope.since`) counted per `enrollment` columns `keys`:
    live ones only, ended ones only, or those that ended for `end_reason`."""
    en = db.enrollment
    columns = [en.c[k] for k in keys]
    stmt = select(*columns, func.count().label("count")).group_by(*columns).order_by(*columns)
    if live is not None:
        states = en.c.state.in_([s.value for s in LIVE_ENROLLMENT_STATES])
        stmt = stmt.where(states if live else ~states)
    if end_reason is not None:
        stmt = stmt.where(en.c.end_reason == end_reason)
    return [dict(row) for row in conn.execute(_enrollment_filter(stmt, scope)).mappings()]


def step_entries(conn: Connection, scope: Scope) -> dict[tuple[str, str], int]:
    """Per journey and step, how many enrollments took it (the `steprun` path trace, since
    `scope.since`): every step kind, not only sends. Leaving on the goal or the exit
    condition before a step is not taking it."""
    r = db.step_run
    took = and_(r.c.step_id.is_not(None), r.c.kind.not_in(_NOT_A_STEP),
                or_(r.c.kind != "exit", r.c.outcome.not_in(_LEFT_BEFORE)))
    stmt = (select(r.c.journey_id, r.c.step_id, func.count(distinct(r.c.enrollment_id)))
            .where(took).group_by(r.c.journey_id, r.c.step_id))
    if scope.since is not None:
        stmt = stmt.where(r.c.at >= scope.since)
    if scope.journey is not None:
        stmt = stmt.where(r.c.journey_id == scope.journey)
    return {(j, s): int(n) for j, s, n in conn.execute(stmt)}


def contacts_by(conn: Connection, column: str) -> dict[str, int]:
    """Today's contacts per stage or temperature."""
    c = db.contact.c[column]
    return {str(k): int(n) for k, n in conn.execute(
        select(c, func.count()).group_by(c).order_by(c))}


# ---- conversions ----------------------------------------------------------------------


def _week(conn: Connection, column: Any) -> ColumnElement[str]:
    """The Monday (UTC) of the week of a timestamp, as YYYY-MM-DD."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("week", func.timezone("UTC", column)), "YYYY-MM-DD")
    return func.date(column, "weekday 0", "-6 days")


def _seconds_between(conn: Connection, later: Any, earlier: Any) -> ColumnElement[float]:
    if conn.dialect.name == "postgresql":
        return cast(extract("epoch", later - earlier), Float)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def stage_moves_per_week(conn: Connection, stages: Sequence[str],
                         since: datetime | None) -> list[dict[str, Any]]:
    """Per week and stage: how many contacts moved into that stage."""
    ch = db.contact_change
    week = _week(conn, ch.c.at).label("week")
    stmt = (select(week, ch.c.new.label("stage"),
                   func.count(distinct(ch.c.contact_id)).label("count"))
            .where(ch.c.field == "stage", ch.c.new.in_(stages))
            .group_by(week, ch.c.new).order_by(week, ch.c.new))
    if since is not None:
        stmt = stmt.where(ch.c.at >= since)
    return [dict(row) for row in conn.execute(stmt).mappings()]


def new_contacts_per_week(conn: Connection, since: datetime | None) -> dict[str, int]:
    c = db.contact
    week = _week(conn, c.c.created_at).label("week")
    stmt = select(week, func.count()).group_by(week).order_by(week)
    if since is not None:
        stmt = stmt.where(c.c.created_at >= since)
    return {str(w): int(n) for w, n in conn.execute(stmt)}


def median_time_to_qualify(conn: Connection, since: datetime | None,
                           per_week: bool) -> dict[str | None, tuple[int, float]]:
    """(contacts, median seconds) from a contact's creation to its first move to
    `prospect`, per week of that move (or overall: the key None), counted in SQL."""
    ch, c = db.contact_change, db.contact
    first = (select(ch.c.contact_id, func.min(ch.c.at).label("at"))
             .where(ch.c.field == "stage", ch.c.new == "prospect")
             .group_by(ch.c.contact_id).subquery("first"))
    week = _week(conn, first.c.at) if per_week else literal("all")
    timed = (select(week.label("week"),
                    _seconds_between(conn, first.c.at, c.c.created_at).label("seconds"))
             .select_from(first.join(c, c.c.id == first.c.contact_id)))
    if since is not None:
        timed = timed.where(first.c.at >= since)
    t = timed.subquery("timed")
    ranked = select(
        t.c.week, t.c.seconds,
        func.row_number().over(partition_by=t.c.week, order_by=t.c.seconds).label("rank"),
        func.count().over(partition_by=t.c.week).label("n")).subquery("ranked")
    middle = ranked.c.rank.in_([(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2])
    stmt = (select(ranked.c.week, func.max(ranked.c.n), func.avg(ranked.c.seconds))
            .where(middle).group_by(ranked.c.week).order_by(ranked.c.week))
    return {(str(w) if per_week else None): (int(n), float(s))
            for w, n, s in conn.execute(stmt)}


# ---- nurture status -------------------------------------------------------------------


def status_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """The daemon's state at a glance; skip reasons count skipped messages only."""
    c, en, m = db.contact, db.enrollment, db.message

    def count_by(*columns: Any, where: ColumnElement[bool] | None = None) -> dict[str, int]:
        stmt = select(*columns, func.count()).group_by(*columns).order_by(*columns)
        if where is not None:
            stmt = stmt.where(where)
        return {"/".join(str(v) for v in row[:-1]): int(row[-1]) for row in conn.execute(stmt)}

    return {
        "contacts by stage": count_by(c.c.stage),
        "contacts by temperature": count_by(c.c.temperature),
        "enrollments by journey/state": count_by(en.c.journey_id, en.c.state),
        "messages by state": count_by(m.c.state),
        "skipped by reason": count_by(m.c.skip_reason, where=and_(
            m.c.state == MessageState.SKIPPED, m.c.skip_reason.is_not(None))),
    }
