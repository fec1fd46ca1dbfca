"""What our email headers say besides the content: the list a message belongs to
(RFC 2919 List-Id), Gmail's Feedback-ID, and addresses in the ASCII form every mail
server reads (IDNA domains: `jose@xn--mnchen-3ya.de`, not an encoded-word).
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import parseaddr

import idna

from nurture.config.settings import Settings

#: what may not appear in a Feedback-ID field (the separator, spaces, non-ASCII)
_FEEDBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._/+-]+")
#: what may not appear in a List-Id label (RFC 5322 dot-atom-text, minus the dot)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
#: the specials a phrase cannot hold unquoted (RFC 5322 3.2.3)
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


def ascii_domain(domain: str) -> str:
    """A domain as DNS and SMTP know it: IDNA 2008 (UTS #46) labels, lowercase."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain  # not a valid IDN: left as written, the relay will say so


def ascii_address(value: str) -> str:
    """`Name <local@dömain>` with the domain in its ASCII form; the display name is left
    as it is (the header folder encodes it). A non-ASCII local part cannot be made
    ASCII (it needs SMTPUTF8): it is left as written."""
    name, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not at or not domain or domain.isascii():
        return value
    converted = Address(display_name=name, username=local, domain=ascii_domain(domain))
    return str(converted)


def sender_domain(settings: Settings) -> str:
    """The domain of the From address, in ASCII (namespaces List-Id; names the sender)."""
    domain = parseaddr(settings.sender.email_from)[1].rpartition("@")[2]
    return ascii_domain(domain) if domain else "nurture.invalid"


def list_id(settings: Settings, purpose: str, locale: str = "") -> str:
    """RFC 2919 `List-Id: Description <purpose.list-id.DOMAIN>`: one list per purpose,
    what a mail client offers to filter or unsubscribe from; the description in the
    message's language when config has one."""
    spec = settings.purposes.get(purpose)
    label = _LABEL_UNSAFE.sub("-", purpose.lower()).strip("-") or "list"
    text = (spec.descriptions.get(locale) or spec.description) if spec else ""
    description = " ".join(text.split()) or purpose
    if description.isascii():
        escaped = description.replace("\\", "\\\\").replace('"', '\\"')
        phrase = f'"{escaped}"'
    else:  # encoded-words may not sit in a quoted string: the folder encodes the words
        phrase = " ".join(_SPECIALS.sub(" ", description).split())
    return f"{phrase} <{label}.list-id.{sender_domain(settings)}>"


def feedback_id(*, campaign: str, journey: str, purpose: str, sender: str) -> str:
    """Gmail's `Feedback-ID: campaign:journey:purpose:sender` (at most four fields, the
    last one naming the sender): spam complaints reported back per field."""
    fields = (campaign, journey, purpose, sender)
    return ":".join(_FEEDBACK_UNSAFE.sub("-", field).strip("-") or "none" for field in fields)
