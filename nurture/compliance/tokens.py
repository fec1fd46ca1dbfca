"""Signed, opaque link tokens (HMAC via itsdangerous).

An unsubscribe token signs a message's random public id: it reveals nothing about the
contact, cannot be forged without the secret key, and never expires. Confirmation
tokens (double opt-in) carry a consent request id (and its nonce) and expire.

Tokens go into links that spam filters read: a long run of letters and digits (an
HMAC in base64, a hex id) can match their cryptocurrency-address rules (26 to 35 base58
characters starting with 1 or 3, `bc1` and 11 or more). A dot breaks every run after
`MAX_RUN` characters, shorter than the shortest rule; reading a token takes the dots out
again where the format has none (the signature and timestamp lengths are fixed), so
tokens from before read the same.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator, Mapping

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeTimedSerializer

from nurture.errors import SignatureError

CONFIRM_MAX_AGE = 14 * 24 * 3600
#: letters and digits in a row in a token, at most
MAX_RUN = 12
_RUN = re.compile(rf"[A-Za-z0-9]{{{MAX_RUN}}}(?=[A-Za-z0-9])")


def broken_runs(text: str) -> str:
    """`text` with a dot after every MAX_RUN letters and digits in a row."""
    return _RUN.sub(r"\g<0>.", text)


class LinkExpired(SignatureError):
    """A genuine confirmation link, older than its validity."""


class Links:
    """Builds and checks the links that go into messages."""

    def __init__(self, secret_key: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = Signer(secret_key, salt="nurture.unsubscribe", sep=".")
        self._confirm = URLSafeTimedSerializer(secret_key, salt="nurture.confirm")
        # a confirmation token is payload.timestamp.signature, the last two of fixed length
        _, stamp, signature = self._confirm.dumps(0).rsplit(".", 2)
        self._confirm_tail = (len(stamp), len(signature))
        self._csrf = Signer(secret_key, salt="nurture.preferences-form")

    def unsubscribe_token(self, public_id: str) -> str:
        """`ID.SIGNATURE`, the signature's runs broken (an id never holds a dot)."""
        value, _, signature = self._unsubscribe.sign(public_id).decode().rpartition(".")
        return f"{value}.{broken_runs(signature)}"

    def unsubscribe_url(self, public_id: str) -> str:
        return f"{self.base_url}/u/{self.unsubscribe_token(public_id)}"

    def message_id_from(self, token: str) -> str:
        """The public message id inside a valid unsubscribe token; SignatureError if not."""
        try:
            value, _, signature = token.partition(".")
            return self._unsubscribe.unsign(f"{value}.{signature.replace('.', '')}").decode()
        except BadSignature as e:
            raise SignatureError("invalid or tampered link") from e

    def form_token(self, token: str) -> str:
        """The preference form's CSRF token: an HMAC of the link token (stateless, no cookie)."""
        return self._csrf.get_signature(token).decode()

    def form_token_ok(self, token: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(self.form_token(token), given)

    def confirm_token(self, request_id: int, nonce: str) -> str:
        """Signs the request's first ledger entry id and its random request nonce: ids may
        be reused after an erasure (SQLite), the nonce never is."""
        return broken_runs(self._confirm.dumps([request_id, nonce]))

    def confirm_url(self, request_id: int, nonce: str) -> str:
        return f"{self.base_url}/consent/confirm/{self.confirm_token(request_id, nonce)}"

    def _rejoined(self, token: str) -> str:
        """A confirmation token as itsdangerous wrote it: the dots `broken_runs` added
        taken out, the format's own put back (a compressed payload starts with one)."""
        lead = "." if token.startswith(".") else ""
        text = token.replace(".", "")
        stamp, signature = self._confirm_tail
        if len(text) <= stamp + signature:
            return token
        tail = len(text) - signature
        return f"{lead}{text[:tail - stamp]}.{text[tail - stamp:tail]}.{text[tail:]}"

    def request_from(self, token: str, max_age: int = CONFIRM_MAX_AGE) -> tuple[int, str]:
        """(request id, nonce) of a valid confirmation token; SignatureError if not."""
        try:
            value = self._confirm.loads(self._rejoined(token), max_age=max_age)
        except SignatureExpired as e:
            raise LinkExpired("this confirmation link has expired") from e
        except BadSignature as e:
            raise SignatureError("invalid or tampered link") from e
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
                and isinstance(value[1], str)):
            raise SignatureError("invalid link")
        return value[0], value[1]


class MessageLinks(Mapping[str, str]):
    """A message's links for templates, signed only when a template asks for one
    (most SMS never do: their opt-out is the STOP reply)."""

    KEYS = ("unsubscribe", "preferences")

    def __init__(self, links: Links, public_id: str) -> None:
        self._links = links
        self._public_id = public_id
        self._url: str | None = None

    def __getitem__(self, key: str) -> str:
        if key not in self.KEYS:
            raise KeyError(key)
        if self._url is None:
            self._url = self._links.unsubscribe_url(self._public_id)
        return self._url

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)
