"""Inbound email: MIME parsing into an ``Envelope``, header decoding, reply splitting, HTML.

parse.py    raw bytes -> Envelope (the entry point: ``parse_email``)
headers.py  encoded words, addresses, Message-IDs, ticket tokens
reply.py    new reply text vs quoted history and signature
html.py     sanitiser for display, HTML -> readable text
loops.py    auto-reply / list / bounce signals, DSN parsing
limits.py   resource limits for untrusted input
mime.py     single MIME parts: payload bytes, file names, raw byte ranges, flowed text
"""

from intake.email.headers import (
    canonical_message_id,
    decode_header_value,
    extract_message_ids,
    find_ticket_refs,
    parse_addresses,
)
from intake.email.html import html_to_text, sanitize_html
from intake.email.limits import ParseLimits
from intake.email.parse import parse_email
from intake.email.reply import is_forward_subject, split_reply

__all__ = [
    "ParseLimits",
    "canonical_message_id",
    "decode_header_value",
    "extract_message_ids",
    "find_ticket_refs",
    "html_to_text",
    "is_forward_subject",
    "parse_addresses",
    "parse_email",
    "sanitize_html",
    "split_reply",
]
