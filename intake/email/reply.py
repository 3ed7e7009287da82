"""Split a plain-text mail body into the new reply and the quoted history / signature.

The model: every line is *new* content, *quoted* ('>' lines and the "On ... wrote:" line that
introduces them) or *blank*. Some lines are *hard separators* after which everything is history
even without '>' marks: Outlook's "-----Original Message-----", a "From: / Sent: / To: / Subject:"
header block, an "On ... wrote:" line followed by unquoted text (Gmail, Apple Mail in HTML). Then:

* quotes after the last new line are history (top-posting);
* quotes before the first new line are history too (bottom-posting, Thunderbird);
* quotes *between* new lines are an inline reply: kept, with their context, as the reply;
* a trailing signature ("-- ", a mailing-list footer, "Sent from my iPhone") is cut off.

Forwarded mail is content: after "---------- Forwarded message ---------" or "Begin forwarded
message:" nothing is cut. If nothing new is left, the whole text is the reply (a bare forward or
an all-quoted body is still what the customer sent).

Every pattern is anchored to one line (or a join of at most three short lines), so the cost is
linear in the text and no regex can backtrack across the body.
"""

from __future__ import annotations

import re

__all__ = ["is_forward_subject", "split_reply"]

# The verb of an attribution line, in the languages our customers' mail clients write.
_WROTE = (
    r"wrote|writes|schrieb|schreibt|a\s+[ée]crit|escribi[óo]|schreef|ha\s+scritto|scrisse|"
    r"escreveu|napisa[łl]a?|skrev|kirjoitti|написал[аи]?|írta|έγραψε|yazd[ıi]|napsal[a]?|"
    r"写道|寫道|wrote\s+on|skriver"
)
_OPENER = r"on|am|le|el|op|il|em|w\s+dniu|den|p[åa]|dne|в|el\s+d[íi]a|il\s+giorno|le\s+\w+\s+\d"
# "On <date>, <name> <addr> wrote:" and friends; the verb at the end, or (German, Dutch) inside.
_ATTRIBUTION_END = re.compile(rf"(?:^|[\s,.\"'>)])(?:{_WROTE})\s*:?\s*$", re.IGNORECASE)
_ATTRIBUTION_OPEN = re.compile(
    rf"^\W{{0,6}}(?:{_OPENER})\s.{{0,250}}?(?:^|\s)(?:{_WROTE})(?:\s.{{0,200}})?:\s*$",
    re.IGNORECASE,
)
# Gmail in some locales: "2016-05-18 23:10 GMT+02:00 Steven Scott <x@example.com>:"
# and mail.ru "Thu, 26 Jun 2014 14:00:51 +0400 от Alexander L <abc@example.com>:": a date or time
# and an address ending the line with a colon.
_DATED_ADDRESS = re.compile(
    r"^.{0,120}(?:\d{1,4}[-./]\d{1,2}[-./]\d{1,4}|\d{1,2}:\d{2}).{0,120}"
    r"<[^<>\s]+@[^<>\s]+>\s*:\s*$"
)
_JOIN_START = re.compile(rf"^\W{{0,6}}(?:(?:{_OPENER})\s|\d)", re.IGNORECASE)
_HAS_DATE_OR_ADDRESS = re.compile(r"\d|@")

_ORIGINAL_MESSAGE = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:original\s+message|ursprüngliche\s+nachricht|original\s+nachricht|"
    r"message\s+d'origine|mensaje\s+original|oorspronkelijk\s+bericht|messaggio\s+originale|"
    r"ursprungligt\s+meddelande|oprindelig\s+meddelelse|alkuperäinen\s+viesti|"
    r"wiadomość\s+oryginalna|исходное\s+сообщение|původní\s+zpráva|mensagem\s+original|"
    r"reply\s+message|antwort\s+nachricht)\s*[-_=*]{2,}\s*$",
    re.IGNORECASE,
)
_FORWARD_MARKER = re.compile(
    r"^\s*(?:[-_=*]{2,}\s*(?:forwarded\s+message|weitergeleitete\s+nachricht|"
    r"message\s+transf[ée]r[ée]|mensaje\s+reenviado|doorgestuurd\s+bericht|"
    r"messaggio\s+inoltrato|vidarebefordrat\s+meddelande|videresendt\s+meddelelse|"
    r"пересылаемое\s+сообщение|mensagem\s+encaminhada|wiadomość\s+przekazana|"
    r"forwarded\s+by\s.{1,80})\s*[-_=*]{2,}|"
    r"begin\s+forwarded\s+message\s*:|anfang\s+der\s+weitergeleiteten\s+nachricht\s*:|"
    r"d[ée]but\s+du\s+message\s+r[ée]exp[ée]di[ée]\s*:|inicio\s+del\s+mensaje\s+reenviado\s*:)\s*$",
    re.IGNORECASE,
)
_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:fwd?|fw|wg|tr|rv|enc|doorst|vs|vb|i|rif|přeposlat)\s*:",
    re.IGNORECASE,
)

# Outlook-style header blocks, by field kind. Optional '*' or '_' around the name: Outlook's
# HTML bold survives as '*From:*' in its plain-text alternative.
_FIELD = r"^\s*[*_]{{0,2}}(?:{names})\s*[*_]{{0,2}}\s*:[*_]{{0,2}}(?:\s|$)"
_FROM = re.compile(
    _FIELD.format(
        names=r"from|von|de|da|van|från|fra|od|от|lähettäjä|feladó|kimden|afzender|expéditeur"
    ),
    re.IGNORECASE,
)
_SENT = re.compile(
    _FIELD.format(
        names=r"sent|date|gesendet|datum|envoy[ée]|enviado|fecha|verzonden|data|skickat|sendt|"
        r"inviato|wysłano|отправлено|päivämäärä|dátum|tarih|odesláno|verstuurd|date\s+d'envoi"
    ),
    re.IGNORECASE,
)
_TO = re.compile(
    _FIELD.format(
        names=r"to|an|à|a|para|aan|till|til|do|кому|vastaanottaja|címzett|kime|komu|cc|kopie|"
        r"copie|cc\s*/\s*bcc"
    ),
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    _FIELD.format(
        names=r"subject|betreff|objet|asunto|onderwerp|oggetto|ämne|emne|temat|тема|aihe|tárgy|"
        r"konu|předmět|assunto"
    ),
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*(?:[_]{3,}|[-]{3,}|[=]{3,}|[—–]{3,}|\*{3,})\s*$")

_SIGNATURE_DELIMITER = re.compile(r"^(?:--|-- |—)\s*$")
_FOOTER_RULE = re.compile(r"^\s*_{2,}\s*$")
_MOBILE_SIGNATURE = re.compile(
    r"^\s*(?:sent\s+from\s+my\s+[\w .'&+®™-]{1,40}|sent\s+from\s+(?:mail|outlook|yahoo\s+mail|"
    r"samsung\s+mobile|my\s+mobile)(?:\s+for\s+[\w .-]{1,20})?|get\s+outlook\s+for\s+[\w .-]{1,20}|"
    r"sent\s+(?:with|via|using)\s+[\w .'&+-]{1,40}(?:\s*\(\S+\))?|sent\s+from\s+\w+\s+\w+|"
    r"von\s+meinem\s+[\w .-]{1,30}\s+gesendet|gesendet\s+(?:von|mit)\s+(?:meinem\s+)?[\w .-]{1,30}|"
    r"envoy[ée]\s+de\s+mon\s+[\w .-]{1,30}|enviado\s+desde\s+mi\s+[\w .-]{1,30}|"
    r"verzonden\s+(?:vanaf|met)\s+(?:mijn\s+)?[\w .-]{1,30}|inviato\s+da\s+[\w .-]{1,30}|"
    r"отправлено\s+с\s+[\w .-]{1,30})"
    r"(?:[.!]?\s+(?:please\s+excuse|sorry\s+for|bitte\s+entschuldigen)\s[\w ,.'-]{1,40})?[.!]?\s*$",
    re.IGNORECASE,
)

_BLANK, _NEW, _QUOTE = 0, 1, 2
_MAX_JOIN = 300  # characters of a joined attribution candidate


def is_forward_subject(subject: str) -> bool:
    """'Fwd: ...', 'FW: ...', 'WG: ...' (and the like) announce a forward, not a reply."""
    return bool(subject) and _FORWARD_SUBJECT.match(subject) is not None


def split_reply(text: str, *, subject: str = "", strip_signature: bool = True) -> tuple[str, str]:
    """(new reply text, quoted history + signature) of a plain-text body.

    ``subject`` lets a forward ('Fwd: ...') keep the message it forwards even when the client
    wrote no forward marker (Outlook). ``strip_signature=False`` removes only quotes.
    """
    if not text:
        return "", ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    quoted = [_is_quoted(line) for line in lines]
    stop, forward = _find_stop(lines, quoted, is_forward_subject(subject))
    if forward:
        # Everything from a forward marker on is the forwarded message: content, not history.
        return _join(lines), ""
    # A horizontal rule right above the separator belongs to it (Outlook's HTML <hr>).
    before = stop - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if 0 <= before < stop < len(lines) and _RULE.match(lines[before]):
        stop = before
    kinds = _classify(lines, quoted, stop)
    new = [i for i in range(stop) if kinds[i] == _NEW]
    if not new:
        return _join(lines), ""
    first, last = new[0], new[-1]
    interleaved = any(kinds[i] == _QUOTE for i in range(first, last))
    start = 0 if interleaved else first
    end = last + 1
    if strip_signature:
        cut = _signature_start(lines, start, end)
        # What stood between the last words and the signature may itself be a quote (a
        # mailing-list footer after a bottom quote): the reply ends at the last new line.
        remaining = [i for i in new if i < cut]
        if remaining and remaining[-1] >= start:
            end = min(cut, remaining[-1] + 1)
    reply = _join(lines[start:end])
    if not reply:
        return _join(lines), ""
    history = _join(lines[:start] + lines[end:])
    return reply, history


def _join(lines: list[str]) -> str:
    # Lines are kept as written (a "-- " delimiter keeps its space); only the ends are trimmed.
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])


def _is_quoted(line: str) -> bool:
    return line.lstrip(" \t").startswith(">")


def _find_stop(lines: list[str], quoted: list[bool], forward_subject: bool) -> tuple[int, bool]:
    """Index of the first hard separator (len(lines) if none), and whether it opens a forward."""
    count = len(lines)
    for index, line in enumerate(lines):
        if quoted[index] or not line.strip():
            continue
        if _FORWARD_MARKER.match(line):
            return index, True
        if _ORIGINAL_MESSAGE.match(line):
            return index, forward_subject
        if _RULE.match(line):
            following = _next_content(lines, index + 1, 3)
            if following is not None and _header_block(lines, following):
                return index, forward_subject
            continue
        if _header_block(lines, index):
            return index, forward_subject
        span = _attribution(lines, index)
        if span:
            after = _next_content(lines, index + span, 4)
            # Followed by '>' lines it is the caption of a quote, decided later; followed by
            # plain text (or nothing) it is where an unmarked quote starts.
            if after is None or not quoted[after]:
                return index, False
    return count, False


def _next_content(lines: list[str], start: int, limit: int) -> int | None:
    for index in range(start, min(len(lines), start + limit + 1)):
        if lines[index].strip():
            return index
    return None


def _field(line: str) -> str | None:
    if ":" not in line[:40]:
        return None  # cheap filter: every field name is short
    if _FROM.match(line):
        return "from"
    if _SENT.match(line):
        return "sent"
    if _SUBJECT.match(line):
        return "subject"
    if _TO.match(line):
        return "to"
    return None


def _header_block(lines: list[str], index: int) -> bool:
    """A run of mail header fields with From, a date, and To or Subject, starting here.

    Outlook writes From/Sent/To/Subject, Yahoo From/To/Cc/Sent/Subject, Hotmail starts with
    Date; a stray "To:" in a sentence never brings the other fields along.
    """
    kind = _field(lines[index])
    if kind is None:
        return False
    kinds = {kind}
    for line in lines[index + 1 : index + 10]:
        if not line.strip():
            continue
        kind = _field(line)
        if kind is None:
            if line[:1] in " \t":
                continue  # a wrapped field value
            break
        kinds.add(kind)
    return "from" in kinds and ("sent" in kinds or len(kinds) >= 3)


def _attribution(lines: list[str], index: int) -> int:
    """Number of lines (1-3) forming an "On ... wrote:" attribution starting here, else 0."""
    first = lines[index].strip()
    if len(first) > _MAX_JOIN:
        return 0
    joined = first
    for span in range(1, 4):
        if span > 1:
            # Only a line that starts like an attribution ("On ...", a date) may continue on
            # the next lines; otherwise "Thanks,\nAlex\nOn ... wrote:" would swallow the reply.
            if not _JOIN_START.match(first):
                return 0
            if index + span - 1 >= len(lines):
                return 0
            extra = lines[index + span - 1].strip()
            if not extra or _is_quoted(extra):
                return 0
            joined = f"{joined} {extra}"
            if len(joined) > _MAX_JOIN:
                return 0
        if _is_attribution(joined):
            return span
    return 0


def _is_attribution(text: str) -> bool:
    if not text.endswith((":", "：")) and not (
        text[-1:].isalpha() and _ATTRIBUTION_END.search(text[-40:])
    ):
        return False
    if _DATED_ADDRESS.match(text):
        return True
    if _ATTRIBUTION_OPEN.match(text):
        return True
    return bool(_ATTRIBUTION_END.search(text)) and bool(_HAS_DATE_OR_ADDRESS.search(text))


def _classify(lines: list[str], quoted: list[bool], stop: int) -> list[int]:
    kinds = [_BLANK] * len(lines)
    index = 0
    while index < stop:
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        if quoted[index]:
            kinds[index] = _QUOTE
            index += 1
            continue
        span = _attribution(lines, index)
        if span:
            # The caption of the quote that follows it.
            for offset in range(span):
                kinds[index + offset] = _QUOTE
            index += span
            continue
        kinds[index] = _NEW
        index += 1
    return kinds


def _signature_start(lines: list[str], start: int, end: int) -> int:
    """Where a trailing signature begins within lines[start:end] (``end`` when none)."""
    # "-- " delimiter (RFC 3676 §4.3), or a '__' footer rule, with a short tail after it.
    for index in range(end - 1, max(start, end - 25) - 1, -1):
        line = lines[index]
        tail = _tail_lines(lines, index + 1, end)
        if (_SIGNATURE_DELIMITER.match(line) and tail <= 15) or (
            _FOOTER_RULE.match(line) and tail <= 8
        ):
            return _trim_blank(lines, start, index)
    # "Sent from my iPhone" as the last line.
    last = end - 1
    while last >= start and not lines[last].strip():
        last -= 1
    if last > start and _MOBILE_SIGNATURE.match(lines[last]):
        return _trim_blank(lines, start, last)
    return end


def _tail_lines(lines: list[str], start: int, end: int) -> int:
    return sum(1 for line in lines[start:end] if line.strip())


def _trim_blank(lines: list[str], start: int, end: int) -> int:
    while end > start and not lines[end - 1].strip():
        end -= 1
    return end
