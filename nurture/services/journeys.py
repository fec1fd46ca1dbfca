"""Journey versions and the operators' hands on them: `plan`, `apply`, pause, resume,
retry, enroll, unenroll (the CLI and the API share these).

`plan` compares the files in journeys/ with what is applied and says whom each change
concerns, before anything changes. `apply` records the files' versions (refusing while
`validate` fails, while contacts stand on a removed step with no `migrate` for it, and,
without `remove_live`, while a removed journey still has contacts), moves the contacts a
`migrate` names, and resumes blocked enrollments at their step, once. The daemon runs
what is applied, nothing else (`engine.versions`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from nurture.authoring import plan as diffs
from nurture.authoring.loader import LoadedJourney, load_journeys
from nurture.engine import executor, membership, versions
from nurture.engine.runtime import Runtime
from nurture.errors import NurtureError, Problem
from nurture.services import contacts
from nurture.services.validate import validate_project
from nurture.store import journeys as jstore
from nurture.vocab import EnrollmentState, WhatChanged

#: why contacts leave a journey removed by `apply --remove-live`
REMOVED = "journey removed"


@dataclass
class JourneyPlan:
    """One journey's part of a plan, with the contacts each change concerns."""

    diff: diffs.JourneyDiff
    applied: LoadedJourney | None
    file: LoadedJourney | None
    #: removed step (or a step no version has any more) → live contacts standing there
    on_removed_steps: dict[str, int] = field(default_factory=dict)
    #: changed wait → live contacts waiting in it (they keep the wait they are in)
    waiting_on_changed: dict[str, int] = field(default_factory=dict)
    #: contacts a sweep of its entry would enroll now (None: not counted, or no sweep)
    newly_entering: int | None = None
    live: int = 0
    blocked: int = 0

    @property
    def journey_id(self) -> str:
        return self.diff.journey_id

    @property
    def migrate(self) -> dict[str, str]:
        return dict(self.file.journey.migrate) if self.file else {}

    def stranded(self) -> dict[str, int]:
        """Contacts on removed steps the new version does not map (`migrate`)."""
        return {s: n for s, n in self.on_removed_steps.items() if s not in self.migrate}

    def as_dict(self) -> dict[str, Any]:
        d = self.diff
        return {
            "journey": d.journey_id, "status": d.status,
            "applied_version": self.applied.version if self.applied else None,
            "file_version": self.file.version if self.file else None,
            "steps": {"added": d.steps_added, "removed": d.steps_removed,
                      "changed": d.steps_changed},
            "entry": [_change(c) for c in d.entry], "exit": [_change(c) for c in d.exits],
            "other": [_change(c) for c in d.other],
            "contacts_on_removed_steps": [
                {"step": s, "contacts": n, "migrate_to": self.migrate.get(s)}
                for s, n in sorted(self.on_removed_steps.items())],
            "waiting_on_changed_waits": self.waiting_on_changed,
            "newly_entering": self.newly_entering, "live_contacts": self.live,
            "blocked": self.blocked,
        }


def _change(change: diffs.Change) -> dict[str, Any]:
    return {"key": change.key, "from": change.before, "to": change.after}


@dataclass
class Plan:
    journeys: list[JourneyPlan]
    #: what `validate` found (errors stop `apply`)
    problems: list[Problem] = field(default_factory=list)
    #: journey files that do not load (shown, never taken for removals)
    unreadable: list[str] = field(default_factory=list)

    def refusals(self, remove_live: bool = False) -> list[str]:
        """Why `apply` would refuse (empty: it would go ahead)."""
        found = [f"validate: {p}" for p in self.problems if p.is_error]
        for jp in self.journeys:
            for step, count in sorted(jp.stranded().items()):
                found.append(f"journey {jp.journey_id}: {count} contact(s) at step '{step}', "
                             f"which the new version removes: add 'migrate: {{{step}: <step "
                             "id>}' to say where they continue")
            if jp.diff.status == "removed" and jp.live and not remove_live:
                found.append(f"journey {jp.journey_id} is removed from journeys/ but "
                             f"{jp.live} contact(s) are in it: `nurture apply --remove-live` "
                             f"makes them exit ({REMOVED!r})")
        return found

    @property
    def changes(self) -> list[JourneyPlan]:
        return [jp for jp in self.journeys if jp.diff.status != "unchanged"]

    def as_dict(self, remove_live: bool = False) -> dict[str, Any]:
        return {"journeys": [jp.as_dict() for jp in self.journeys],
                "problems": [str(p) for p in self.problems], "unreadable": self.unreadable,
                "refusals": self.refusals(remove_live),
                "blocked": sum(jp.blocked for jp in self.journeys)}


@dataclass
class Applied:
    """What an `apply` did."""

    versions: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    exited: int = 0
    migrated: int = 0
    resumed: int = 0
    plan: Plan | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.versions, "removed": self.removed, "exited": self.exited,
                "migrated": self.migrated, "resumed": self.resumed}


# ---- plan ----------------------------------------------------------------------------


def read_files(rt: Runtime) -> tuple[list[LoadedJourney], list[Problem], list[str]]:
    """The journey files as `load_journeys` reads them, and the stems of those that do not
    load (a file with a schema error is not a removal)."""
    folder = rt.settings.journeys_path
    loaded, problems = load_journeys(folder, set(rt.settings.purposes))
    stems = {p.stem for p in [*folder.glob("*.yaml"), *folder.glob("*.yml")]}
    return loaded, problems, sorted(stems - {j.id for j in loaded})


def applied_journeys(conn: Connection) -> dict[str, LoadedJourney]:
    return {row["journey_id"]: versions.parse_version(row["journey_id"], row["version"],
                                                      row["path"], row["source"])
            for row in jstore.current_sources(conn)}


def build_plan(conn: Connection, files: list[LoadedJourney], now: datetime, *,
               problems: list[Problem] | None = None, unreadable: list[str] | None = None,
               newcomers: bool = True) -> Plan:
    """Compare `files` with what is applied; count whom each change concerns."""
    applied = applied_journeys(conn)
    by_id = {j.id: j for j in files}
    skipped = set(unreadable or ())
    plans: list[JourneyPlan] = []
    for jid in sorted(set(applied) | set(by_id)):
        if jid not in by_id and jid in skipped:
            continue  # the file is there but does not load: `validate` says why
        before, after = applied.get(jid), by_id.get(jid)
        if before is not None and after is not None and before.version == after.version:
            jp = JourneyPlan(diffs.diff(jid, before.journey, before.journey), before, after)
        else:
            jp = JourneyPlan(diffs.diff(jid, before.journey if before else None,
                                        after.journey if after else None), before, after)
        _count(conn, jp)
        plans.append(jp)
    if newcomers:
        swept = [jp.file for jp in plans if jp.file and _sweeps(jp)]
        counts = membership.count_newcomers(conn, swept, now)
        for jp in plans:
            if jp.file and jp.file.id in counts:
                jp.newly_entering = counts[jp.file.id]
    return Plan(plans, list(problems or []), sorted(skipped))


def _sweeps(jp: JourneyPlan) -> bool:
    """Applying this journey evaluates every contact against its (condition) entry."""
    return (jp.diff.status in ("added", "changed") and jp.file is not None
            and jp.file.journey.entry.event is None)


def _count(conn: Connection, jp: JourneyPlan) -> None:
    if jp.applied is None:
        return
    positions = jstore.live_by_step(conn, jp.journey_id)
    jp.live = sum(positions.values())
    jp.blocked = jstore.blocked_count(conn, jp.journey_id)
    if jp.file is None:
        return
    jp.on_removed_steps = {s: n for s, n in positions.items()
                           if s is not None and s not in jp.file.steps}
    waits = jstore.live_by_wait(conn, jp.journey_id)
    jp.waiting_on_changed = {s: waits[s] for s in jp.diff.waits_changed if s in waits}


def plan_project(rt: Runtime, config_path: Path, now: datetime) -> Plan:
    """`nurture plan`: nothing changes."""
    problems = validate_project(config_path)
    files, _, unreadable = read_files(rt)
    with rt.db.reader() as conn:
        return build_plan(conn, files, now, problems=problems, unreadable=unreadable)


# ---- apply ---------------------------------------------------------------------------


def apply_project(rt: Runtime, config_path: Path, now: datetime, *,
                  remove_live: bool = False) -> Applied:
    """`nurture apply`: refused while `validate` reports an error."""
    problems = validate_project(config_path)
    files, _, unreadable = read_files(rt)
    return apply_files(rt, files, now, remove_live=remove_live, problems=problems,
                       unreadable=unreadable)


def apply_files(rt: Runtime, files: list[LoadedJourney], now: datetime, *,
                remove_live: bool = False, problems: list[Problem] | None = None,
                unreadable: list[str] | None = None) -> Applied:
    """Record `files` as the applied journeys, in one transaction (NurtureError with
    every reason when refused); `rt` then runs them."""
    done = Applied()
    with rt.db.begin() as conn:
        plan = build_plan(conn, files, now, problems=problems, unreadable=unreadable,
                          newcomers=False)
        refusals = plan.refusals(remove_live)
        if refusals:
            raise NurtureError("apply refused:\n" + "\n".join(f"  {r}" for r in refusals))
        for jp in plan.changes:
            _apply_one(conn, rt, jp, now, done)
        current = applied_journeys(conn)
        done.resumed = resume_blocked(conn, current, now, why="applied")
        jstore.bump_generation(conn)
        done.plan = plan
    with rt.db.reader() as conn:
        versions.load(rt, conn)
    return done


def _apply_one(conn: Connection, rt: Runtime, jp: JourneyPlan, now: datetime,
               done: Applied) -> None:
    if jp.file is None:
        done.exited += membership.exit_journey(conn, jp.journey_id, REMOVED, now)
        jstore.mark_removed(conn, jp.journey_id, now)
        done.removed.append(jp.journey_id)
        return
    new = jp.file
    root = rt.settings.root_path
    path = new.path.relative_to(root) if new.path.is_relative_to(root) else new.path
    source = new.path.read_text(encoding="utf-8")
    if hashlib.sha256(source.encode()).hexdigest()[:16] != new.version:
        raise NurtureError(f"{new.path} changed while it was being applied: run apply again")
    jstore.record_version(conn, new.id, new.version, str(path), source, now)
    jstore.set_current(conn, new.id, new.version, now, sweep=_sweeps(jp))
    done.versions[new.id] = new.version
    done.migrated += _migrate(conn, new, now)


def _migrate(conn: Connection, new: LoadedJourney, now: datetime) -> int:
    """Contacts at a step the new version removed and maps (`migrate`) continue at its
    target in the new version; those that had not started yet start on it. The others
    finish the version they entered."""
    updates, traces = [], []
    for row in jstore.live_rows(conn, new.id):
        if row["journey_version"] == new.version:
            continue
        target = new.journey.migrate.get(row["step_id"] or "")
        unstarted = row["seq"] == 0 and row["state"] == EnrollmentState.ACTIVE
        if target is None and not unstarted:
            continue
        values: dict[str, Any] = {"id": row["id"], "journey_version": new.version,
                                  "step_id": target or new.journey.steps[0].id,
                                  "updated_at": now}
        if row["state"] in (EnrollmentState.WAITING, EnrollmentState.BLOCKED):
            # the wait it was in is gone (a wait_for step removed), or it was stuck there
            values.update(state=EnrollmentState.ACTIVE, next_run_at=now, wait_event=None,
                          wait_step=None, last_error="")
        updates.append(values)
        if target is not None:
            traces.append(executor.trace_row(row, "operator", "migrated",
                                             f"{row['step_id']} -> {target}", now))
    jstore.update_enrollments(conn, updates)
    jstore.insert_step_runs(conn, traces)
    return len(traces)


def resume_blocked(conn: Connection, journeys: dict[str, LoadedJourney], now: datetime, *,
                   why: str, journey_id: str | None = None, step_id: str | None = None) -> int:
    """Blocked enrollments run their step again, once, on the current version when it
    has that step (or maps it): a later error blocks them again."""
    updates, traces = [], []
    for row in jstore.blocked_rows(conn, journey_id, step_id):
        values: dict[str, Any] = {"id": row["id"], "state": EnrollmentState.ACTIVE,
                                  "next_run_at": now, "last_error": "", "updated_at": now,
                                  "journey_version": row["journey_version"],
                                  "step_id": row["step_id"]}
        current = journeys.get(row["journey_id"])
        if current is not None:
            target = (row["step_id"] if row["step_id"] in current.steps
                      else current.journey.migrate.get(row["step_id"] or ""))
            if target is not None or row["step_id"] is None:
                values.update(journey_version=current.version, step_id=target)
        updates.append(values)
        traces.append(executor.trace_row(row, "operator", "resumed",
                                         f"{why}; was: {row['last_error']}", now))
    jstore.update_enrollments(conn, updates)
    jstore.insert_step_runs(conn, traces)
    return len(updates)


# ---- operators -------------------------------------------------------------------------


def _set_paused(conn: Connection, rt: Runtime, journey_id: str, paused: bool,
                now: datetime) -> WhatChanged:
    state = jstore.journey_states(conn).get(journey_id)
    if state is None or state["version"] is None:
        versions.refresh(rt, conn)
        raise NurtureError(f"journey {journey_id!r} is not applied (applied: "
                           f"{', '.join(sorted(rt.journeys)) or 'none'})")
    if bool(state["paused"]) == paused:
        return "unchanged"
    jstore.set_paused(conn, journey_id, paused, now)
    jstore.bump_generation(conn)
    return "updated"


def pause(conn: Connection, rt: Runtime, journey_id: str, now: datetime) -> WhatChanged:
    """No step of the journey runs (no sends); contacts keep their place, and contacts
    that enter wait at its first step until `resume`. "unchanged" when already paused."""
    return _set_paused(conn, rt, journey_id, True, now)


def resume(conn: Connection, rt: Runtime, journey_id: str, now: datetime) -> WhatChanged:
    """"unchanged" when the journey was not paused."""
    return _set_paused(conn, rt, journey_id, False, now)


def retry(conn: Connection, rt: Runtime, now: datetime, *, journey_id: str | None = None,
          step_id: str | None = None) -> int:
    """Blocked enrollments (of a journey, at a step) run their step again now."""
    current = applied_journeys(conn)
    return resume_blocked(conn, current, now, why="retried", journey_id=journey_id,
                          step_id=step_id)


def enroll(conn: Connection, rt: Runtime, who: str, journey_id: str, reason: str,
           now: datetime, *, existing_ok: bool = False) -> dict[str, Any]:
    """`change` "created"; with `existing_ok`, a contact already live in the journey is
    left where it stands ("unchanged", its enrollment's step and state) instead of an
    error."""
    versions.refresh(rt, conn)  # a server started before the last apply
    contact = contacts.find_contact(conn, who)
    if existing_ok and journey_id in rt.journeys:
        for row in jstore.live_rows(conn, journey_id, contact_id=contact.id):
            return {"contact_id": contact.id, "journey": journey_id,
                    "enrollment_id": int(row["id"]), "reason": reason, "change": "unchanged",
                    "step": row["step_id"], "state": str(row["state"])}
    enrollment_id = membership.enroll_by_hand(conn, rt, contact.id, journey_id, reason, now)
    [row] = jstore.live_rows(conn, journey_id, contact_id=contact.id)
    return {"contact_id": contact.id, "journey": journey_id, "enrollment_id": enrollment_id,
            "reason": reason, "change": "created", "step": row["step_id"],
            "state": str(row["state"])}


def unenroll(conn: Connection, rt: Runtime, who: str, journey_id: str, reason: str,
             now: datetime) -> dict[str, Any]:
    contact = contacts.find_contact(conn, who)
    row = membership.unenroll(conn, contact.id, journey_id, reason, now)
    return {"contact_id": contact.id, "journey": journey_id, "enrollment_id": row["id"],
            "step": row["step_id"], "reason": reason}
