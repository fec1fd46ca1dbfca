"""Signed, opaque link tokens (HMAC via itsdangerous).

An unsubscribe token signs a message's random public id: it reveals nothing about the
contact, cannot be forged without the secret key, and never expires. Confirmation
tokens (double opt-in) carry a consent request id (and its nonce) and expire.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeTimedSerializer

from nurture.errors import SignatureError

CONFIRM_MAX_AGE = 14 * 24 * 3600


class LinkExpired(SignatureError):
    """A genuine confirmation link, older than its validity."""


class Links:
    """Builds and checks the links that go into messages."""

    def __init__(self, secret_key: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = Signer(secret_key, salt="nurture.unsubscribe", sep=".")
        self._confirm = URLSafeTimedSerializer(secret_key, salt="nurture.confirm")
        self._csrf = Signer(secret_key, salt="nurture.preferences-form")

    def unsubscribe_token(self, public_id: str) -> str:
        return self._unsubscribe.sign(public_id).decode()

    def unsubscribe_url(self, public_id: str) -> str:
        return f"{self.base_url}/u/{self.unsubscribe_token(public_id)}"

    def message_id_from(self, token: str) -> str:
        """The public message id inside a valid unsubscribe token; SignatureError if not."""
        try:
            return self._unsubscribe.unsign(token).decode()
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
        return self._confirm.dumps([request_id, nonce])

    def confirm_url(self, request_id: int, nonce: str) -> str:
        return f"{self.base_url}/consent/confirm/{self.confirm_token(request_id, nonce)}"

    def request_from(self, token: str, max_age: int = CONFIRM_MAX_AGE) -> tuple[int, str]:
        """(request id, nonce) of a valid confirmation token; SignatureError if not."""
        try:
            value = self._confirm.loads(token, max_age=max_age)
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
