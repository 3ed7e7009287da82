"""HTML bodies: a sanitiser for display and a converter to readable plain text.

Mail HTML is hostile by default (scripts, event handlers, CSS that fetches remote resources, and
tracking pixels), so what we keep for display passes an allow-list (nh3, i.e. ammonia). Remote
images are dropped unless asked for: an agent opening a ticket must not tell the sender so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

import nh3

__all__ = ["html_to_text", "sanitize_html"]

_TAGS = frozenset(nh3.ALLOWED_TAGS | {"font", "tfoot"}) - {"map", "area"}
_ATTRIBUTES: dict[str, set[str]] = {
    tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items() if tag in _TAGS
}
_ATTRIBUTES.setdefault("*", set()).update({"dir", "lang", "title"})
_ATTRIBUTES["td"] = _ATTRIBUTES.get("td", set()) | {"valign", "width"}
_ATTRIBUTES["font"] = {"color", "face", "size"}
_SCHEMES = frozenset({"http", "https", "mailto", "tel", "cid"})


def _keep_attribute(remote_images: bool) -> Callable[[str, str, str], str | None]:
    def keep(tag: str, attr: str, value: str) -> str | None:
        if tag == "img" and attr == "src":
            lowered = value.strip().lower()
            if lowered.startswith("cid:"):
                return value
            if remote_images and lowered.startswith(("http://", "https://")):
                return value
            return None
        return value

    return keep


_FILTER_LOCAL = _keep_attribute(False)
_FILTER_REMOTE = _keep_attribute(True)


def sanitize_html(html: str, *, remote_images: bool = False) -> str:
    """Allow-listed HTML safe to show in the agent UI.

    No scripts, styles, event handlers, forms or frames; links keep only safe schemes and get
    ``rel="noopener noreferrer nofollow"``; images keep only ``cid:`` sources (inline parts) unless
    ``remote_images`` is set.
    """
    if not html:
        return ""
    try:
        return nh3.clean(
            html,
            tags=set(_TAGS),
            clean_content_tags={"script", "style", "title", "head"},
            attributes=_ATTRIBUTES,
            attribute_filter=_FILTER_REMOTE if remote_images else _FILTER_LOCAL,
            url_schemes=set(_SCHEMES),
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        ).strip()
    except Exception:  # noqa: BLE001 - nh3 raising on input is a bug there; never on our side
        return nh3.clean(_to_escaped_text(html))


def _to_escaped_text(html: str) -> str:
    from html import escape

    return escape(html_to_text(html)).replace("\n", "<br>")


# Elements that start a new line, and those that want an empty line around them.
_LINE_TAGS = frozenset(
    {
        "div", "tr", "table", "ul", "ol", "dl", "dt", "dd", "section", "article", "header",
        "footer", "address", "center", "form", "fieldset", "figure", "figcaption", "caption",
        "tbody", "thead", "tfoot", "nav", "aside", "main", "details", "summary",
    }
)  # fmt: skip
_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote"})
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "xml"})
_VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base"})
_SPACE = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")


class _TextBuilder(HTMLParser):
    """Collects lines of text; blockquotes become '> ' prefixed lines (so quotes stay quotes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.current_quote = 0
        self.last_quote = 0
        self.pending = 0  # 0: none, 1: line break, 2: empty line
        self.quote = 0
        self.skip = 0
        self.pre = 0
        self.lists: list[list[int]] = []  # [ordered, counter]
        self.links: list[tuple[str, int]] = []  # (href, text length when it opened)
        self.text_len = 0

    # -- output primitives --------------------------------------------------------------
    def _flush_line(self) -> None:
        self.last_quote = self.current_quote
        line = "".join(self.current).rstrip()
        self.lines.append("> " * self.current_quote + line if self.current_quote else line)
        self.current = []

    def _apply_pending(self) -> None:
        if not self.pending:
            return
        if self.current:
            self._flush_line()
        if self.pending == 2 and self.lines and self.lines[-1].strip("> ") != "":
            depth = min(self.quote, self.last_quote)
            self.lines.append(">" * depth)
        self.pending = 0

    def _emit(self, text: str) -> None:
        if self.pending and (self.current or self.lines):
            self._apply_pending()
        self.pending = 0
        if not self.current:
            text = text.lstrip(" ")
            if not text:
                return
            self.current_quote = self.quote
        elif text.startswith(" ") and self.current[-1].endswith(" "):
            text = text.lstrip(" ")
        self.current.append(text)
        self.text_len += len(text)

    def _break(self, kind: int) -> None:
        self.pending = max(self.pending, kind)

    # -- parser callbacks --------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            if self.current or self.lines:
                self._apply_pending()
                self._flush_line_or_blank()
            return
        if tag == "hr":
            self._break(1)
            self._emit("---")
            self._break(1)
            return
        if tag == "blockquote":
            self._break(1)
            self.quote += 1
            return
        if tag in ("ul", "ol"):
            self.lists.append([1 if tag == "ol" else 0, 0])
            self._break(1)
            return
        if tag == "li":
            self._break(1)
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                self._emit(f"{self.lists[-1][1]}. ")
            else:
                self._emit("- ")
            return
        if tag == "pre":
            self.pre += 1
        if tag in ("td", "th") and self.current:
            self._emit(" ")
            return
        if tag == "a":
            href = dict(attrs).get("href") or ""
            self.links.append((href.strip(), self.text_len))
            return
        if tag == "img":
            return
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)

    def _flush_line_or_blank(self) -> None:
        if self.current:
            self._flush_line()
        else:
            self.lines.append("> " * self.quote if self.quote else "")
        self.current_quote = self.quote

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "blockquote":
            self._break(1)
            if self.current:
                self._apply_pending()
            self.quote = max(0, self.quote - 1)
            return
        if tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._break(1)
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag == "a" and self.links:
            href, start = self.links.pop()
            self._link_suffix(href, start)
            return
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS or tag == "li":
            self._break(1)

    def _link_suffix(self, href: str, start: int) -> None:
        lowered = href.lower()
        if not href or href.startswith("#") or lowered.startswith(("javascript:", "cid:")):
            return
        shown = "".join(self.current)[-(self.text_len - start) :] if self.text_len > start else ""
        target = href[7:] if lowered.startswith("mailto:") else href
        if not shown.strip():
            self._emit(target)
            return
        norm = shown.strip().rstrip("/").lower()
        if norm in (target.rstrip("/").lower(), lowered.rstrip("/")) or target.lower() in norm:
            return
        if norm.startswith(("http://", "https://", "www.")) and target.rstrip("/").lower().endswith(
            norm.removeprefix("http://").removeprefix("https://")
        ):
            return
        self._emit(f" ({target})")

    def handle_data(self, data: str) -> None:
        if self.skip or not data:
            return
        if self.pre:
            chunks = data.replace("\r\n", "\n").split("\n")
            for index, chunk in enumerate(chunks):
                if index:
                    self._apply_pending()
                    self._flush_line_or_blank()
                if chunk:
                    if self.pending:
                        self._apply_pending()
                    if not self.current:
                        self.current_quote = self.quote
                    self.current.append(chunk.replace("\u00a0", " "))
                    self.text_len += len(chunk)
            return
        text = _SPACE.sub(" ", data)
        if text == " " and not self.current:
            return
        self._emit(text)

    def result(self) -> str:
        self.pending = 0
        if self.current:
            self._flush_line()
        text = "\n".join(line.rstrip() for line in self.lines)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def html_to_text(html: str) -> str:
    """Readable plain text from mail HTML: paragraphs, line breaks, lists, 'text (url)' links,
    and blockquotes as '> ' quoted lines."""
    if not html:
        return ""
    builder = _TextBuilder()
    try:
        builder.feed(html)
        builder.close()
    except Exception:  # noqa: BLE001 - HTMLParser is tolerant; this is a last resort
        return _SPACE.sub(" ", re.sub(r"<[^>]*>", " ", html)).strip()
    return builder.result()
