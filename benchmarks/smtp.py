"""How much does keeping one SMTP connection per batch save? Prints figures; asserts nothing.

Starts a real SMTP server on 127.0.0.1 (aiosmtpd, from the test extras) and hands it N
messages (default 500) through `SmtpProvider`: once on one kept connection (the daemon's
way), then with a connection per message (what a provider that does not keep it would
cost), plain and with STARTTLS (a throwaway CA from `cryptography`). Loopback hides the
network round trips a real relay adds to each new connection (TCP, TLS, EHLO, AUTH), so
the gap only grows in production. Last line:

    kept/s: N  per-message/s: M  kept-tls/s: T  per-message-tls/s: U

    python benchmarks/smtp.py [--messages 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.config.settings import Settings  # noqa: E402
from nurture.providers.base import OutgoingMessage  # noqa: E402
from nurture.providers.smtp import SmtpProvider  # noqa: E402
from tests.test_provider_smtp import (  # noqa: E402
    LoopbackController,
    Relay,
    certificates,
)


def message(i: int) -> OutgoingMessage:
    return OutgoingMessage(
        f"{i:032x}", "email", f"user{i}@example.com", "Acme Planning <hello@acme.test>",
        subject="Votre guide de la planification", text="Bonjour,\n\nVoici le guide.\n" * 20,
        html="<p>Bonjour,</p><p>Voici le guide.</p>" * 20,
        headers={"List-Unsubscribe": "<https://nurture.test/u/" + "T" * 120 + ">",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})


def rate(provider: SmtpProvider, count: int, reconnect: bool) -> float:
    started = time.perf_counter()
    for i in range(count):
        provider.send(message(i))
        if reconnect:
            provider.close()
    provider.close()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    count = parser.parse_args().messages
    folder = Path(tempfile.mkdtemp(prefix="nurture-smtp-bench-"))
    certs = certificates(folder / "tls")
    figures = {}
    for label, security, tls in (("", "none", {}),
                                 ("-tls", "starttls", {"tls_context": certs.server_context})):
        relay = Relay()
        controller = LoopbackController(relay, hostname="127.0.0.1", port=0, **tls)
        controller.start()
        settings = Settings.model_validate({"root": str(folder), "providers": {
            "email": "smtp", "smtp": {"host": "127.0.0.1", "port": controller.port,
                                      "security": security, "ca_file": "tls/ca.pem"}}})
        kept = SmtpProvider(settings)
        figures[f"kept{label}/s"] = rate(kept, count, reconnect=False)
        fresh = SmtpProvider(settings)
        figures[f"per-message{label}/s"] = rate(fresh, count, reconnect=True)
        controller.stop()
        assert len(relay.received) == 2 * count
        print(f"{security}: {kept.connections} connection(s) kept, "
              f"{fresh.connections} opened one per message")
    print("  ".join(f"{name}: {value:,.0f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
