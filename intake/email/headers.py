"""Header decoding for inbound mail: encoded words, raw 8-bit, addresses, Message-IDs, tickets.

We decode every header ourselves from its raw value instead of letting ``email.policy.default``
build header objects: the stdlib header parser raises on some broken inputs and is the slow part
of a parse. One tolerant decoder means one behaviour for good and broken mail alike.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterator
from email.utils import getaddresses
from functools import lru_cache

__all__ = [
    "canonical_message_id",
    "decode_bytes",
    "decode_header_value",
    "extract_message_ids",
    "find_ticket_refs",
    "parse_addresses",
    "raw_header_bytes",
    "unfold",
]

# Charset labels seen in the wild that Python does not know, or knows as a narrower set than the
# sender meant (mail clients label GB18030/CP949/Windows-1252 text with the older names).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown-8bit": "",
    "unknown": "",
    "default": "",
    "us-ascii": "",  # 8-bit bytes in "ascii" text are common: sniff instead of failing
    "ascii": "",
    # Latin-1 labelled text is nearly always Windows-1252 (WHATWG decodes it that way too).
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso_8859-1": "cp1252",
}


@lru_cache(maxsize=256)
def _codec_for(charset: str | None) -> str:
    """A Python codec name for a MIME charset label, or '' when we must sniff."""
    if not charset:
        return ""
    label = charset.strip().strip('"').lower()
    if label in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[label]
    try:
        return codecs.lookup(label).name
    except LookupError:
        return ""


# When a declared charset fails strictly, the sender usually meant a superset or a sibling of it
# (Shift_JIS bytes labelled ISO-2022-JP, GBK labelled GB2312, Big5-HKSCS labelled Big5).
_FAMILY: dict[str, tuple[str, ...]] = {
    "iso2022_jp": ("iso2022_jp_ext", "iso2022_jp_2", "x-cp50221", "cp932", "euc_jp"),
    "shift_jis": ("cp932", "euc_jp"),
    "euc_jp": ("cp932", "iso2022_jp_2"),
    "cp932": ("euc_jp",),
    "gb18030": ("big5",),
    "big5": ("big5hkscs", "gb18030"),
    "cp949": ("iso2022_kr",),
}
_MULTIBYTE = frozenset(
    {"gb18030", "big5", "big5hkscs", "cp932", "shift_jis", "euc_jp", "cp949", "euc_kr", "johab"}
    | {"iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext", "iso2022_kr", "cp950", "hz"}
)
# Codecs whose text looks like ASCII bytes but is not plain ASCII.
_SEVEN_BIT_STATEFUL = frozenset({"utf-7", "iso2022_jp", "iso2022_kr", "hz", "iso2022_jp_2"})
# Codecs whose bytes are mostly NUL and ASCII ("h\x00i\x00" in UTF-16LE): ASCII-only bytes are
# no sign of ASCII text in them, and UTF-8 is never a fallback for them.
_WIDE = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
_NOT_ASCII_BASED = _SEVEN_BIT_STATEFUL | _WIDE


def _latin_fallback(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 are read as Windows-1252, one at a time.

    Mail that is UTF-8 with a stray Latin-1 byte (pasted text, a broken signature) keeps every
    character instead of losing them to U+FFFD.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    chunk = error.object[error.start : error.end]
    return bytes(chunk).decode("cp1252", errors="replace"), error.end


codecs.register_error("omnidesk-latin-fallback", _latin_fallback)


_DETECT_ISOLATION = [
    "gb18030", "big5", "cp932", "euc_jp", "cp949", "cp1251", "koi8_r", "cp1253", "cp1255",
    "cp1256", "cp874",
]  # fmt: skip


def _detect(data: bytes) -> str | None:
    """A guess for undeclared 8-bit text that is not UTF-8, only where Latin is implausible.

    In Latin-script text the non-ASCII bytes are a few accented letters per line; in CJK or
    Cyrillic legacy encodings they are most of the line. Only the latter is handed to the
    detector (restricted to those encodings): on Latin text detectors guess wildly.
    """
    lines = [line for line in data.split(b"\n") if not line.isascii()]
    sample = b"\n".join(lines)[:16384]
    high = sum(1 for byte in sample if byte >= 0x80)
    letters = sum(1 for byte in sample if byte >= 0x80 or chr(byte).isalpha())
    if high < 24 or high < 0.5 * letters:
        return None
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - optional: fall back to the Latin path
        return None
    try:
        best = from_bytes(sample, cp_isolation=_DETECT_ISOLATION).best()
    except Exception:  # noqa: BLE001 - a detector failure only means "no guess"
        return None
    return str(best.encoding) if best is not None else None


def decode_bytes(data: bytes, charset: str | None = None, hints: tuple[str, ...] = ()) -> str:
    """Bytes in a declared (possibly wrong or unknown) charset to text; never raises.

    Order: the declared charset, its known siblings, UTF-8, then ``hints`` (charsets declared
    elsewhere in the same message); undeclared text gets a statistical guess; the last resort is
    UTF-8 with stray bytes read as Windows-1252. Bytes a declared charset cannot decode become
    U+FFFD rather than an error.
    """
    if data.isascii() and _codec_for(charset) not in _NOT_ASCII_BASED:
        return storable(data.decode("ascii"))
    return storable(_decode_bytes(data, charset, hints))


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """Text that any store accepts: no lone surrogates and no NUL characters.

    Lone surrogates (UTF-7 can encode them) are not valid UTF-8, so they become U+FFFD. NUL is
    never content in mail (it is what UTF-16 misread as ASCII leaves, or binary junk), and
    PostgreSQL refuses it in text and jsonb, so it is dropped.
    """
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _decode_bytes(data: bytes, charset: str | None, hints: tuple[str, ...]) -> str:
    codec = _codec_for(charset)
    candidates: list[str] = []
    if codec:
        candidates.append(codec)
        candidates.extend(_FAMILY.get(codec, ()))
    if codec not in _NOT_ASCII_BASED:
        # ASCII-only bytes "decode" as UTF-8: never let that shadow an escape-sequence charset.
        candidates.append("utf-8")
    for hint in hints:
        hinted = _codec_for(hint)
        if hinted and hinted not in _SINGLE_BYTE_DEFAULTS:
            candidates.append(hinted)
    tried: set[str] = set()
    for candidate in candidates:
        if candidate in tried:
            continue
        tried.add(candidate)
        try:
            if candidate == _CP50221:
                return _decode_iso2022jp_ms(data)
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
    if codec == "utf-8" or not codec:
        guess = None if codec else _detect(data)
        if guess:
            try:
                return data.decode(guess)
            except (UnicodeDecodeError, LookupError):
                pass
        return data.decode("utf-8", errors="omnidesk-latin-fallback")
    if codec in _SEVEN_BIT_STATEFUL and codec.startswith("iso2022_jp"):
        return _decode_iso2022jp_ms(data, errors="replace")
    return data.decode(codec, errors="replace")


_SINGLE_BYTE_DEFAULTS = frozenset({"utf-8", "cp1252", "ascii"})
# Microsoft's ISO-2022-JP (CP50220/CP50221, NEC and IBM extensions such as circled digits), which
# Python has no codec for: decoded by mapping JIS X 0208 pairs onto CP932.
_CP50221 = "x-cp50221"
_ESCAPE = re.compile(rb"\x1b(\$[@B]|\$\(D|\([BJI])")


def _decode_iso2022jp_ms(data: bytes, errors: str = "strict") -> str:
    out = bytearray()
    mode = b"(B"
    pos = 0
    for match in [*_ESCAPE.finditer(data), None]:
        chunk = data[pos : match.start() if match else len(data)]
        if mode in (b"$@", b"$B"):
            for index in range(0, len(chunk) - 1, 2):
                j1, j2 = chunk[index], chunk[index + 1]
                if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
                    if errors == "strict":
                        raise UnicodeDecodeError("iso2022_jp", data, pos, pos + 2, "bad pair")
                    out += b"?"
                    continue
                s1 = ((j1 - 0x21) >> 1) + (0x81 if j1 <= 0x5E else 0xC1)
                if j1 & 1:
                    s2 = j2 + 0x1F + (1 if j2 >= 0x60 else 0)
                else:
                    s2 = j2 + 0x7E
                out += bytes((s1, s2))
        elif mode == b"(I":
            out += bytes(b | 0x80 for b in chunk)
        elif mode == b"$(D":
            out += b"?" * (len(chunk) // 2)  # JIS X 0212 has no CP932 mapping
        else:
            out += chunk
        if match:
            mode = match.group(1)
            pos = match.end()
    return out.decode("cp932", errors=errors)


def raw_header_bytes(value: str) -> bytes:
    """Undo the parser's surrogateescape of raw 8-bit header bytes."""
    return value.encode("ascii", errors="surrogateescape")


def _raw_to_text(value: str, hints: tuple[str, ...] = ()) -> str:
    if value.isascii():
        return storable(value)
    try:
        data = raw_header_bytes(value)
    except UnicodeEncodeError:
        # Already real text (a str header that never went through bytes).
        return storable(value)
    return storable(_raw_bytes_to_text(data, hints))


def _mostly_utf8(data: bytes) -> bool:
    """Whether bytes that are not valid UTF-8 are still UTF-8 text with a few bad bytes.

    A name cut mid-character or one stray byte leaves most multi-byte sequences valid; text in
    a legacy 8-bit or CJK charset almost never forms a valid UTF-8 sequence by accident. So the
    valid non-ASCII characters must outnumber the invalid sequences.
    """
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    good = sum(1 for char in text if char > "\x7f") - bad
    return good > bad


def _raw_bytes_to_text(data: bytes, hints: tuple[str, ...]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if _mostly_utf8(data):
        return data.decode("utf-8", errors="replace")
    # Multi-byte charsets first: they reject bytes that are not theirs, single-byte ones never do.
    for hint in sorted(hints, key=lambda h: _codec_for(h) not in _MULTIBYTE):
        codec = _codec_for(hint)
        if not codec or codec in ("utf-8", "cp1252"):
            continue
        for candidate in (codec, *_FAMILY.get(codec, ())):
            try:
                if candidate == _CP50221:
                    return _decode_iso2022jp_ms(data)
                return data.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    return data.decode("latin-1")


_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_STRAY_NEWLINE = re.compile(r"[\r\n]+")


def unfold(value: str) -> str:
    """RFC 5322 unfolding: drop the line breaks, keep the whitespace that followed them."""
    value = _FOLD.sub("", value)
    return _STRAY_NEWLINE.sub(" ", value) if ("\n" in value or "\r" in value) else value


# charset, optional RFC 2231 language, encoding, text. The text is allowed to contain spaces:
# some mailers forget to encode them, and '?' still bounds the match so this never overruns.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _word_bytes(text: str, charset: str) -> bytes:
    """The bytes of an encoded word's text, raw 8-bit bytes included.

    RFC 2047 forbids raw 8-bit bytes inside a word, but old mailers (Eudora) write
    'Fr<0xF6>sche' instead of 'Fr=F6sche'. Such a byte is in the charset the word names, so it
    is kept as a byte and decoded with the rest of the word rather than turned into '?'.
    """
    try:
        return text.encode("ascii", errors="surrogateescape")
    except UnicodeEncodeError:
        pass
    # Real characters: a value that was decoded once already (a file name read back).
    for codec in (_codec_for(charset) or "utf-8", "utf-8"):
        try:
            return text.encode(codec, errors="surrogateescape")
        except (UnicodeEncodeError, LookupError):
            continue
    return text.encode("utf-8", errors="replace")


def _decode_q(text: str, charset: str) -> bytes:
    data = _word_bytes(text.replace("_", " "), charset)
    return _Q_HEX.sub(lambda m: bytes((int(m.group(1), 16),)), data)


def _decode_b(text: str) -> bytes:
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        return b""


def decode_header_value(value: str, hints: tuple[str, ...] = ()) -> str:
    """A raw header value (possibly folded, RFC 2047 encoded, or raw 8-bit) as display text.

    Whitespace between adjacent encoded words is dropped (RFC 2047 §6.2); adjacent words in the
    same charset are joined as bytes first, because mailers split multi-byte characters across
    words.
    """
    # Whitespace around the raw value is transport noise (an encoded trailing space is content).
    value = unfold(value).strip()
    if "=?" not in value:
        return _raw_to_text(value, hints)
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            out.append(decode_bytes(bytes(pending), pending_charset, hints))
        pending = bytearray()
        pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        if gap and not (pending_charset is not None and gap.isspace()):
            flush()
            out.append(_raw_to_text(gap, hints))
        charset, encoding, text = match.group(1), match.group(2), match.group(3)
        data = _decode_b(text) if encoding in "bB" else _decode_q(text, charset)
        if pending_charset is not None and charset.lower() != pending_charset:
            flush()
        pending_charset = charset.lower()
        pending += data
        pos = match.end()
    flush()
    out.append(_raw_to_text(value[pos:], hints))
    return storable("".join(out))


def _clean_name(name: str, raw: str, hints: tuple[str, ...]) -> str:
    if "(" in name and f'"{name}"' not in raw:
        # An unquoted "(comment)" next to a phrase is not part of the name (RFC 5322 §3.2.2):
        # 'MAILER-DAEMON (Mail Delivery System) <...>' is named MAILER-DAEMON. A comment alone
        # ('a@b (Ann)') is all the name there is, so it stays.
        without = _COMMENT.sub(" ", name).strip()
        if without:
            name = " ".join(without.split())
    name = decode_header_value(name, hints).strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].strip()
    return name


def parse_addresses(value: str, hints: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header, tolerant of the usual breakage.

    Parsing happens on the raw value so an encoded comma in a display name ("Doe, John") does not
    split the address; names are decoded afterwards. When the raw parse finds nothing usable (a
    whole "Name <addr>" hidden in one encoded word), we decode first and parse again.
    """
    value = unfold(value)
    if value.count("(") > 8:
        value = _drop_deep_comments(value)
    if "@" in value:
        value = _separate_bare_addresses(_drop_routes(value))
    pairs = _parse(value, hints)
    if "=?" in value and not any("@" in addr for _, addr in pairs):
        pairs = _parse(decode_header_value(value, hints), hints)
    return pairs


def _drop_deep_comments(value: str, limit: int = 4) -> str:
    """Remove comment text nested deeper than ``limit``, in one linear pass.

    The stdlib address parser recurses once per nested '(' and dies on hostile headers with
    thousands of them; real comments are never nested more than once or twice.
    """
    out: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"' and depth == 0:
            quoted = True
        elif char == "(":
            depth += 1
            if depth > limit:
                continue
        elif char == ")" and depth:
            depth -= 1
            if depth >= limit:
                continue
        if depth <= limit:
            out.append(char)
    return "".join(out) + ")" * min(depth, limit)


# RFC 5322 §4.4 obs-route: "<@relay1.example,@relay2.example:mary@example.net>". Receivers must
# accept it and ignore the route; the stdlib parser splits it into junk recipients instead.
_OBS_ROUTE = re.compile(r"<\s*@[^<>:\"]*:\s*")


def _drop_routes(value: str) -> str:
    return _OBS_ROUTE.sub("<", value) if "<@" in value or "< " in value else value


def _separate_bare_addresses(value: str) -> str:
    """'a@x.example b@y.example' (the comma forgotten) as 'a@x.example, b@y.example'.

    Without the comma the stdlib parser makes one broken address of both. Mail clients read the
    first as the sender and the rest as further addresses, as Python's parser once did. Only
    values without quotes, angle brackets or comments are split: there, words are separated by
    white space alone.
    """
    if value.count("@") < 2 or any(char in value for char in '<"('):
        return value
    chunks: list[str] = []
    for chunk in value.split(","):
        words: list[str] = []
        seen_address = False
        for word in chunk.split():
            if "@" in word and seen_address:
                words.append(",")
            seen_address = seen_address or "@" in word
            words.append(word)
        chunks.append(" ".join(words))
    return ", ".join(chunks)


# "alice@example.com <bob@example.com>": an unquoted address used as a display name, which
# getaddresses would split into two recipients.
_ADDRESS_AS_NAME = re.compile(r"(^|,)\s*([^<>\",;:@\s]+@[^<>\",;:\s]+)\s*<")


def _parse(value: str, hints: tuple[str, ...]) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    if "@" in value and "<" in value:
        value = _ADDRESS_AS_NAME.sub(r'\1 "\2" <', value)
    try:
        parsed = getaddresses([value])
    except RecursionError:  # pragma: no cover - deep comments are flattened beforehand
        return result
    for name, addr in parsed:
        addr = _raw_to_text(addr, hints).strip().strip("<>").strip()
        if not addr and not name:
            continue
        if "=?" in addr:
            addr = decode_header_value(addr, hints).strip()
        name = _clean_name(name, value, hints)
        if not addr.startswith('"') and any(c.isspace() for c in addr):
            # "From: Test test@example.com": the address is the last word with an '@', the words
            # before it are a display name the sender forgot to quote.
            words = addr.split()
            at = [i for i, word in enumerate(words) if "@" in word]
            if at:
                addr = words[at[-1]].strip("<>")
                name = name or " ".join(words[: at[-1]])
        if name.lower() == addr.lower():
            name = ""  # a "name" that only repeats the address says nothing
        result.append((name, addr))
    return result


_ANGLE_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")
# Tokens are found first and tested for '@' in Python: a "word@word" regex would rescan a long
# junk token from every start position (quadratic on hostile headers).
_TOKEN = re.compile(r"[^\s<>,;()\"\[\]]+")


def _bare_tokens(text: str) -> Iterator[str]:
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if "@" in token[1:-1]:
            yield token


_COMMENT = re.compile(r"\([^()]*\)")
_MAX_ID = 995


def _usable(core: str) -> bool:
    local, at, domain = core.rpartition("@")
    return (
        bool(at and local and domain)
        and len(core) <= _MAX_ID
        and core.isascii()
        and core.isprintable()
        and " " not in core
    )


def canonical_message_id(value: str) -> str | None:
    """The canonical ``<local@domain>`` form of a Message-ID header value, or None if unusable.

    Accepts missing angle brackets, surrounding whitespace/comments and folding; rejects values
    without an '@', with spaces inside, or non-ASCII ones (those are junk, not identifiers).
    """
    if not value:
        return None
    value = unfold(value).strip()
    match = _ANGLE_ID.search(value)
    if match:
        core = match.group(1)
    elif "<" in value:
        core = _obsolete_id(value)
        if core is None:
            return None  # a bracketed value that is not one token ("<a b@c>") is junk
    else:
        stripped = _COMMENT.sub(" ", value).strip()
        core = next(_bare_tokens(stripped), "")
        if not core:
            return None
    core = core.strip("<>")
    return f"<{core}>" if _usable(core) else None


# RFC 5322 §4.5.4 obs-id: comments and white space around the '@' and the dots of an id,
# "<1234 @ local(host) .machine .example>"; white space anywhere else means junk.
_OBS_ID = re.compile(r"<([^<>]*)>")
_SPACE_AROUND_DOT_OR_AT = re.compile(r"\s*([.@])\s*")


def _obsolete_id(value: str) -> str | None:
    match = _OBS_ID.search(value)
    if match is None:
        return None
    core = _SPACE_AROUND_DOT_OR_AT.sub(r"\1", _COMMENT.sub(" ", match.group(1)).strip())
    return None if not core or any(char.isspace() for char in core) else core


def extract_message_ids(header_value: str) -> tuple[str, ...]:
    """Every Message-ID in a References / In-Reply-To value, canonical, in order, de-duplicated.

    Tolerates junk between ids (dates, "message from ..." phrases), commas, missing brackets.
    """
    if not header_value:
        return ()
    value = _COMMENT.sub(" ", unfold(header_value))
    found: list[str] = []
    seen: set[str] = set()
    pos = 0
    # Take bracketed ids, and bare word@word tokens between them.
    for match in _ANGLE_ID.finditer(value):
        _bare_ids(value[pos : match.start()], found, seen)
        _add_id(match.group(1), found, seen)
        pos = match.end()
    _bare_ids(value[pos:], found, seen)
    return tuple(found)


def _bare_ids(text: str, found: list[str], seen: set[str]) -> None:
    if "@" in text:
        for bare in _bare_tokens(text):
            _add_id(bare, found, seen)


def _add_id(core: str, found: list[str], seen: set[str]) -> None:
    core = core.strip("<>")
    if _usable(core):
        canonical = f"<{core}>"
        if canonical not in seen:
            seen.add(canonical)
            found.append(canonical)


@lru_cache(maxsize=32)
def _ticket_pattern(prefix: str) -> re.Pattern[str]:
    # "[OD-1042]", "OD-1042", "OD#1042" and "[OD 1042]"-free: the number must follow a '-' or '#'.
    # Bounded on both sides so "XOD-1042" or "OD-10421x" do not count.
    return re.compile(
        rf"(?<![A-Za-z0-9]){re.escape(prefix)}[-#](\d{{1,12}})(?![0-9A-Za-z])", re.IGNORECASE
    )


def find_ticket_refs(text: str, prefix: str) -> tuple[str, ...]:
    """Ticket numbers like ``[OD-1042]`` or ``OD-1042`` in a subject, as ``('OD-1042',)``."""
    if not text or not prefix:
        return ()
    refs: list[str] = []
    for match in _ticket_pattern(prefix).finditer(text):
        ref = f"{prefix}-{match.group(1)}"
        if ref not in refs:
            refs.append(ref)
    return tuple(refs)
