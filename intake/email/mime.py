"""Helpers for single MIME parts: payload bytes, names, Content-IDs, raw byte ranges, flowed text.

Kept apart from ``parse.py`` (which decides what is body and what is attachment) because these are
mechanical: they answer "what are this part's bytes / name" and never fail on odd input.
"""

from __future__ import annotations

import binascii
import io
import mimetypes
import re
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import Message

from intake.email.headers import decode_header_value

__all__ = [
    "RawIndex",
    "charset_of",
    "content_id",
    "default_filename",
    "filename",
    "message_bytes",
    "payload_bytes",
    "unflow",
    "uuencoded_files",
]

POLICY = email_policy.compat32

_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE
)


def charset_of(part: Message, data: bytes, html: bool) -> str | None:
    """The declared charset; for HTML without one, the <meta charset> of the document."""
    charset = part.get_content_charset()
    if not charset and html:
        match = _META_CHARSET.search(data[:4096])
        if match:
            return match.group(1).decode("ascii")
    return charset


_NOT_BASE64 = bytes(
    b
    for b in range(256)
    if chr(b) not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)


def _base64(text: str) -> bytes:
    data = text.encode("ascii", errors="ignore")
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        pass
    # Truncated or mis-padded: decode every complete group we have (what mail clients show).
    data = data.translate(None, _NOT_BASE64)
    data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def payload_bytes(part: Message) -> bytes:
    """The decoded (base64/QP/uuencode) body of a leaf part; never raises."""
    payload = part.get_payload()
    if isinstance(payload, str):
        encoding = str(part.get("content-transfer-encoding", "") or "").strip().lower()
        if encoding == "base64":
            try:
                return _base64(payload)
            except (binascii.Error, ValueError):
                pass
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a corrupt transfer encoding yields the raw text below
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("ascii", errors="surrogateescape")
    return b""


def message_bytes(message: Message) -> bytes:
    """Serialise a parsed (sub)message; used only when its original bytes cannot be located."""
    buffer = io.BytesIO()
    # maxheaderlen=0: write headers as they came, never re-fold them.
    BytesGenerator(buffer, mangle_from_=False, maxheaderlen=0, policy=POLICY).flatten(message)
    return buffer.getvalue()


def _raw_header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _safe_name(name: str) -> str:
    # Never let a sender choose a path: keep the last component, drop control characters.
    name = re.split(r"[\\/]", name)[-1]
    return "".join(c for c in name if c.isprintable()).strip()[:255]


def filename(part: Message) -> str:
    """The sender's file name (Content-Disposition filename, else Content-Type name), decoded.

    Handles RFC 2231 (stdlib), RFC 2047 words inside the quoted name (not allowed, universal)
    and raw 8-bit names, for which compat32 would hand back a lossy ``Header`` object.
    """
    source = part
    disposition = _raw_header(part, "content-disposition")
    ctype = _raw_header(part, "content-type")
    if (disposition and not disposition.isascii()) or (ctype and not ctype.isascii()):
        source = Message()
        if disposition:
            source["Content-Disposition"] = decode_header_value(disposition)
        if ctype:
            source["Content-Type"] = decode_header_value(ctype)
    try:
        name = source.get_filename()
    except Exception:  # noqa: BLE001 - a broken RFC 2231 parameter must not lose the part
        name = None
    if not name:
        return ""
    return _safe_name(decode_header_value(str(name)))


def content_id(part: Message) -> str | None:
    value = part.get("content-id")
    if value is None:
        return None
    cid = decode_header_value(str(value)).strip().strip("<>").strip()
    return cid or None


_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "video/quicktime": ".mov",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "text/rfc822-headers": ".txt",
    "application/octet-stream": "",
}
_KIND = {"image": "image", "video": "video", "audio": "audio", "text": "document"}
_CID_NAME = re.compile(r"^([^@\s/\\]+\.[A-Za-z0-9]{2,5})@")


def default_filename(part: Message, content_type: str) -> str:
    """A display name for a part that has none: what mail clients show for it.

    The Content-Description of report parts ("Delivery report"), a file-like Content-ID
    ("image001.jpg@01CD..."), the type ("image.png"), the Content-ID's local part, else "file".
    """
    ext = _EXTENSIONS.get(content_type)
    if ext is None:
        ext = mimetypes.guess_extension(content_type, strict=False) or ""
    if content_type.startswith("message/") or content_type == "text/rfc822-headers":
        description = part.get("content-description")
        if description:
            text = _safe_name(decode_header_value(str(description)))
            if text:
                return text if text.lower().endswith(ext) else text + ext
    cid = content_id(part) or ""
    match = _CID_NAME.match(cid)
    if match:
        return _safe_name(match.group(1))
    kind = _KIND.get(content_type.partition("/")[0])
    if ext and kind:
        return kind + ext
    if cid:
        local = _safe_name(cid.partition("@")[0])
        if local:
            return local
    return "file" + ext


class RawIndex:
    """Byte ranges of each part's body in the raw message, found by scanning MIME boundaries.

    Lets an attached message/rfc822 be stored as the exact bytes the sender attached, rather
    than a re-serialisation that changes whitespace. Where our scan and the stdlib parser do not
    agree on the structure, no range is recorded and callers fall back to serialising.
    """

    def __init__(self, raw: bytes, root: Message) -> None:
        self.raw = raw
        self.bodies: dict[int, tuple[int, int]] = {}
        self._index(root, 0, len(raw))

    def body(self, part: Message) -> bytes | None:
        span = self.bodies.get(id(part))
        return None if span is None else self.raw[span[0] : span[1]]

    def _index(self, part: Message, start: int, end: int) -> None:
        body = _body_start(self.raw, start, end)
        self.bodies[id(part)] = (body, end)
        payload = part.get_payload()
        if not isinstance(payload, list):
            return
        if part.get_content_maintype() == "message":
            encoding = str(part.get("content-transfer-encoding", "") or "").strip().lower()
            inner = payload[0] if len(payload) == 1 else None
            if isinstance(inner, Message) and encoding in ("", "7bit", "8bit", "binary"):
                self._index(inner, body, end)
            return
        boundary = part.get_boundary()
        if not boundary:
            return
        spans = _split(self.raw, body, end, boundary)
        if len(spans) != len(payload):
            return
        for child, (child_start, child_end) in zip(payload, spans):
            self._index(child, child_start, child_end)


def _body_start(raw: bytes, start: int, end: int) -> int:
    if raw.startswith(b"\r\n", start):
        return start + 2
    if raw.startswith(b"\n", start):
        return start + 1
    ends = [i for i in (raw.find(b"\n\n", start, end), raw.find(b"\n\r\n", start, end)) if i >= 0]
    if not ends:
        return end
    first = min(ends)
    return first + (2 if raw[first + 1 : first + 2] == b"\n" else 3)


def _split(raw: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    marker = boundary.encode("ascii", errors="surrogateescape")
    pattern = re.compile(rb"^--" + re.escape(marker) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    spans: list[tuple[int, int]] = []
    child_start: int | None = None
    for match in pattern.finditer(raw, start, end):
        if child_start is not None:
            # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            cut = match.start()
            if cut > child_start and raw[cut - 1 : cut] == b"\n":
                cut -= 2 if raw[cut - 2 : cut - 1] == b"\r" else 1
            spans.append((child_start, max(child_start, cut)))
        if match.group(1):
            return spans
        newline = raw.find(b"\n", match.end(), end)
        child_start = end if newline < 0 else newline + 1
    if child_start is not None and child_start < end:
        spans.append((child_start, end))  # no closing delimiter: the last part runs to the end
    return spans


def unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed soft line breaks (a line ending in a space continues)."""
    out: list[str] = []
    buffer = ""
    buffer_depth = -1
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        content = content.removeprefix(" ")  # space-stuffing
        flowed = content.endswith(" ") and content != "-- "
        if buffer_depth >= 0 and depth != buffer_depth:
            out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
            buffer, buffer_depth = "", -1
        if flowed:
            buffer += content[:-1] if delsp else content
            buffer_depth = depth
            continue
        buffer += content
        out.append(">" * depth + (" " if depth and buffer else "") + buffer)
        buffer, buffer_depth = "", -1
    if buffer_depth >= 0:
        out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
    return "\n".join(out)


# "begin 644 name" ... "end" (uuencode, pre-MIME attachments still sent by old tools and scripts).
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} +(\S[^\n]*)\n", re.MULTILINE)
_UU_END = re.compile(r"^end[ \t]*$", re.MULTILINE)


def uuencoded_files(text: str) -> list[tuple[str, bytes]]:
    """The uuencoded files in a plain-text body, as (name, bytes); ``text`` has LF line ends.

    A "begin" block that does not decode as uuencode is text, not a file.
    """
    if "begin " not in text:
        return []
    files: list[tuple[str, bytes]] = []
    pos = 0
    for begin in _UU_BEGIN.finditer(text):
        if begin.start() < pos:
            continue  # a "begin" line inside a block already taken
        end = _UU_END.search(text, begin.end())
        if end is None:
            break
        data = _uudecode(text[begin.end() : end.start()])
        if data is not None:
            files.append((_safe_name(begin.group(1)) or "file", data))
            pos = end.end()
    return files


def _uudecode(block: str) -> bytes | None:
    """The bytes of uuencoded lines, or None when they are not uuencode."""
    out = bytearray()
    for line in block.split("\n"):
        if not line.strip():
            continue  # a blank line is no data (a2b_uu would read it as 32 NUL bytes)
        try:
            data = line.encode("ascii")
        except UnicodeEncodeError:
            return None
        try:
            out += binascii.a2b_uu(data)
        except binascii.Error:
            # Encoders disagree on padding; the length byte says how much of the line is data.
            size = (((data[0] - 32) & 63) * 4 + 5) // 3
            try:
                out += binascii.a2b_uu(data[:size])
            except binascii.Error:
                return None
    return bytes(out)
