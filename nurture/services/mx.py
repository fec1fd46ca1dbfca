"""The optional MX check of an import: does each domain take mail?

`hygiene.has_mx` answers for one address at a time, waiting up to 3 s on each lookup: a
file with 2,000 domains behind a resolver that does not answer would wait for hours. An
import asks once per distinct domain, several at a time, each within `timeout`, and gives
up on a resolver that keeps failing: its remaining domains are *unchecked* (accepted and
counted), never refused because DNS was down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.name
import dns.resolver


class MxChecker:
    """Answers per domain: True (an MX), False (no mail: NXDOMAIN, no MX, null MX
    "0 ."), None (not known: the lookup failed or the resolver was given up on).
    Definitive answers are kept for the checker's life."""

    def __init__(self, resolver: dns.resolver.Resolver | None = None, *, timeout: float = 2.0,
                 workers: int = 8, give_up_after: int = 3) -> None:
        self.timeout = timeout
        self.workers = workers
        #: consecutive failed lookups after which the resolver is given up on
        self.give_up_after = give_up_after
        self.known: dict[str, bool] = {}
        self.failures_in_a_row = 0
        self.given_up = False
        #: lookups sent (answered or not)
        self.lookups = 0
        self._lock = threading.Lock()
        try:
            self.resolver = resolver or dns.resolver.Resolver()
        except dns.exception.DNSException:  # no resolv.conf: nothing to ask
            self.resolver = dns.resolver.Resolver(configure=False)
            self.given_up = True

    def check(self, domains: Iterable[str]) -> dict[str, bool | None]:
        wanted = sorted({d.lower().rstrip(".") for d in domains} - set(self.known))
        if wanted and not self.given_up:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                list(pool.map(self._lookup, wanted))
        return {d: self.known.get(d.lower().rstrip(".")) for d in domains}

    def _lookup(self, domain: str) -> None:
        with self._lock:
            if self.given_up:
                return
            self.lookups += 1
        try:
            answer = self.resolver.resolve(domain, "MX", lifetime=self.timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._answered(domain, False)
        except dns.exception.DNSException:  # timeout, SERVFAIL, no nameserver answering
            with self._lock:
                self.failures_in_a_row += 1
                self.given_up = self.given_up or self.failures_in_a_row >= self.give_up_after
        else:
            self._answered(domain, any(r.exchange != dns.name.root for r in answer))

    def _answered(self, domain: str, takes_mail: bool) -> None:
        with self._lock:
            self.known[domain] = takes_mail
            self.failures_in_a_row = 0
