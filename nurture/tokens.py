"""Signed, opaque link tokens (HMAC via itsdangerous).

An unsubscribe token signs a message's random public id: it reveals nothing about the
contact, cannot be forged without the secret key, and never expires. Confirmation
tokens (double opt-in) carry a consent request id and expire.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeTimedSerializer

from nurture.errors import SignatureError

CONFIRM_MAX_AGE = 14 * 24 * 3600


class Links:
    """Builds and checks the links that go into messages."""

    def __init__(self, secret_key: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = Signer(secret_key, salt="nurture.unsubscribe", sep=".")
        self._confirm = URLSafeTimedSerializer(secret_key, salt="nurture.confirm")

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

    def confirm_token(self, request_id: int) -> str:
        return self._confirm.dumps(request_id)

    def confirm_url(self, request_id: int) -> str:
        return f"{self.base_url}/consent/confirm/{self.confirm_token(request_id)}"

    def request_id_from(self, token: str, max_age: int = CONFIRM_MAX_AGE) -> int:
        try:
            value = self._confirm.loads(token, max_age=max_age)
        except SignatureExpired as e:
            raise SignatureError("this confirmation link has expired") from e
        except BadSignature as e:
            raise SignatureError("invalid or tampered link") from e
        if not isinstance(value, int):
            raise SignatureError("invalid link")
        return value
