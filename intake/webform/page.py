"""The HTML pages of the web form, rendered with the standard library only.

Accessible without JavaScript: every control has a ``<label for>``; the focus order is the
reading order (name, email, subject, the form's own fields, message, attachments, send); errors
are listed in a ``role="alert"`` summary at the top that links to each field, and repeated next to
the field, which carries ``aria-invalid`` and ``aria-describedby``. The page is plain HTML with one
inline style sheet that works from 320px wide up. Every value shown is escaped with
``html.escape``; templates are ``string.Template`` so a ``$`` in user input is never expanded
(substitution happens once, on escaped values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from string import Template

from intake.webform.abuse import HONEYPOT_FIELD
from intake.webform.settings import (
    MAX_EMAIL_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_SUBJECT_CHARS,
    FieldSpec,
    FormLimits,
    FormSpec,
)

__all__ = ["FormView", "done_page", "form_page", "message_page"]

_STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { margin: 0; font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1b1b1b; background: #f6f7f9; }
main { max-width: 40rem; margin: 0 auto; padding: 1rem; background: #fff; min-height: 100vh; }
h1 { font-size: 1.5rem; line-height: 1.25; margin: 0.5rem 0 1rem; }
.field { margin: 0 0 1.25rem; }
label { display: block; font-weight: 600; margin-bottom: 0.25rem; }
.optional { font-weight: 400; color: #555; }
.hint { display: block; color: #555; font-size: 0.9rem; margin-bottom: 0.25rem; }
input, select, textarea { width: 100%; max-width: 100%; font: inherit; padding: 0.5rem;
       border: 2px solid #6b6b6b; border-radius: 4px; background: #fff; color: inherit; }
input[type=checkbox] { width: auto; margin-right: 0.5rem; }
textarea { min-height: 10rem; resize: vertical; }
input:focus, select:focus, textarea:focus, button:focus, a:focus {
       outline: 3px solid #ffbf47; outline-offset: 1px; }
[aria-invalid=true] { border-color: #b00020; }
.field-error { color: #b00020; font-weight: 600; margin: 0 0 0.25rem; }
.summary { border: 3px solid #b00020; padding: 0.75rem 1rem; margin-bottom: 1.5rem; }
.summary h2 { font-size: 1.1rem; margin: 0 0 0.5rem; }
.summary a { color: #b00020; font-weight: 600; }
.notice { border-left: 6px solid #1d70b8; background: #eef5fb; padding: 0.75rem 1rem;
       margin-bottom: 1.5rem; }
button { font: inherit; font-weight: 600; padding: 0.6rem 1.5rem; border: 0; border-radius: 4px;
       background: #00703c; color: #fff; cursor: pointer; }
button:hover { background: #005a30; }
code { font-size: 1rem; word-break: break-all; background: #f0f0f0; padding: 0.1rem 0.3rem; }
.hp, .vh { position: absolute; left: -10000px; top: auto; width: 1px; height: 1px; overflow: hidden; }
"""

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>$title</title>
<style>$style</style>
</head>
<body>
<main>
$body
</main>
</body>
</html>
""")

_FORM = Template("""<h1>$title</h1>
$intro$alert<form method="post" action="$action" enctype="multipart/form-data" novalidate>
<input type="hidden" name="submission_id" value="$submission_id">
<input type="hidden" name="form_token" value="$token">
$fields<div class="hp" aria-hidden="true">
<label for="$honeypot">Leave this field empty</label>
<input type="text" id="$honeypot" name="$honeypot" value="" tabindex="-1" autocomplete="off">
</div>
<button type="submit" id="send">Send message</button>
</form>
""")

# Extensions for the ``accept`` hint where the allowed type is a family (browsers accept
# ``image/*`` but not ``application/vnd.openxmlformats-officedocument.*``).
_ACCEPT_FAMILIES = {
    "application/vnd.openxmlformats-officedocument.*": ".docx,.xlsx,.pptx",
    "application/vnd.oasis.opendocument.*": ".odt,.ods,.odp",
}


@dataclass(frozen=True)
class FormView:
    """Everything one rendering of a form shows."""

    form: FormSpec
    action: str
    submission_id: str
    token: str
    limits: FormLimits
    values: Mapping[str, str] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    # A problem not tied to one field ("the form expired", "please try again").
    notice: str = ""


def _page(title: str, body: str) -> str:
    return _PAGE.substitute(title=escape(title), style=_STYLE, body=body)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def _accept(types: tuple[str, ...]) -> str:
    parts = [_ACCEPT_FAMILIES.get(t, t) for t in types if not t.endswith(".*") or t in _ACCEPT_FAMILIES]
    return ",".join(parts)


class _Fields:
    """Renders the controls of one view, in focus order."""

    def __init__(self, view: FormView) -> None:
        self.view = view
        self.order: list[tuple[str, str]] = []  # (field id, label) for the error summary

    def _described(self, name: str, hint: bool) -> tuple[str, str]:
        """(aria attributes, error paragraph) of a control."""
        ids = []
        if hint:
            ids.append(f"{name}-hint")
        error = self.view.errors.get(name)
        paragraph = ""
        attrs = ""
        if error:
            ids.append(f"{name}-error")
            paragraph = f'<p class="field-error" id="{name}-error"><span class="vh">Error: </span>{escape(error)}</p>\n'
            attrs = ' aria-invalid="true"'
        if ids:
            attrs += f' aria-describedby="{" ".join(ids)}"'
        return attrs, paragraph

    def control(
        self,
        name: str,
        label: str,
        *,
        kind: str = "text",
        required: bool = False,
        max_length: int | None = None,
        autocomplete: str | None = None,
        hint: str = "",
        options: list[str] | None = None,
    ) -> str:
        self.order.append((name, label))
        value = self.view.values.get(name, "")
        attrs, error = self._described(name, bool(hint))
        common = f'id="{name}" name="{name}"{attrs}'
        if required:
            common += ' required aria-required="true"'
        if max_length is not None and kind not in ("select", "checkbox", "file"):
            common += f' maxlength="{max_length}"'
        if autocomplete:
            common += f' autocomplete="{escape(autocomplete)}"'
        if kind == "textarea":
            widget = f'<textarea {common} rows="8">{escape(value)}</textarea>'
        elif kind == "select":
            choices = ['<option value="">Choose…</option>'] + [
                f'<option value="{escape(o)}"{" selected" if o == value else ""}>{escape(o)}</option>'
                for o in options or []
            ]
            widget = f"<select {common}>" + "".join(choices) + "</select>"
        elif kind == "checkbox":
            checked = " checked" if value else ""
            widget = f'<input type="checkbox" {common} value="yes"{checked}>'
        elif kind == "file":
            widget = f'<input type="file" {common} multiple accept="{escape(_accept(self.view.limits.allowed_types))}">'
        else:
            widget = f'<input type="{kind}" {common} value="{escape(value)}">'
        optional = "" if required else ' <span class="optional">(optional)</span>'
        hint_html = f'<span class="hint" id="{name}-hint">{escape(hint)}</span>\n' if hint else ""
        if kind == "checkbox":
            return (f'<div class="field">\n{hint_html}{error}{widget}'
                    f'<label for="{name}" style="display:inline">{escape(label)}{optional}</label>\n</div>\n')
        return (f'<div class="field">\n<label for="{name}">{escape(label)}{optional}</label>\n'
                f"{hint_html}{error}{widget}\n</div>\n")

    def extra(self, spec: FieldSpec) -> str:
        kind = spec.type
        return self.control(
            spec.name, spec.label, kind=kind, required=spec.required, max_length=spec.max_length,
            autocomplete=spec.autocomplete, hint=spec.help, options=spec.options,
        )


def form_page(view: FormView) -> str:
    form = view.form
    limits = view.limits
    fields = _Fields(view)
    parts = [
        fields.control("name", "Your name", max_length=MAX_NAME_CHARS, autocomplete="name"),
        fields.control("email", "Your email address", kind="email", required=True,
                       max_length=MAX_EMAIL_CHARS, autocomplete="email",
                       hint="We send our answer and your ticket number here."),
        fields.control("subject", "Subject", required=form.subject_required,
                       max_length=MAX_SUBJECT_CHARS, autocomplete="off"),
        *(fields.extra(spec) for spec in form.fields),
        fields.control("message", "Your message", kind="textarea", required=True,
                       max_length=MAX_MESSAGE_CHARS, autocomplete="off"),
    ]
    if form.attachments and limits.max_attachments > 0:
        parts.append(fields.control(
            "attachments", "Attachments", kind="file",
            hint=(f"Up to {limits.max_attachments} files, {_megabytes(limits.max_attachment_bytes)} "
                  f"each, {_megabytes(limits.max_total_attachment_bytes)} in total: images, PDF, "
                  "text or office documents."),
        ))
    alert = ""
    if view.errors:
        listed = [(fid, view.errors[fid]) for fid, _ in fields.order if fid in view.errors]
        listed += [(k, v) for k, v in view.errors.items() if k not in dict(fields.order)]
        count = len(listed)
        items = "".join(f'<li><a href="#{escape(fid)}">{escape(msg)}</a></li>' for fid, msg in listed)
        lead = f"<p>{escape(view.notice)}</p>" if view.notice else ""
        alert = (f'<div class="summary" role="alert" id="error-summary" tabindex="-1">\n'
                 f"<h2>There {'is a problem' if count == 1 else f'are {count} problems'} with your message</h2>\n"
                 f"{lead}<ul>{items}</ul>\n</div>\n")
    elif view.notice:
        alert = f'<div class="summary" role="alert" id="error-summary" tabindex="-1"><p>{escape(view.notice)}</p></div>\n'
    intro = f"<p>{escape(form.intro)}</p>\n" if form.intro else ""
    body = _FORM.substitute(
        title=escape(form.title),
        intro=intro,
        alert=alert,
        action=escape(view.action),
        submission_id=escape(view.submission_id),
        token=escape(view.token),
        fields="".join(parts),
        honeypot=HONEYPOT_FIELD,
    )
    title = form.title if not (view.errors or view.notice) else f"Error: {form.title}"
    return _page(title, body)


def done_page(form: FormSpec, *, submission_id: str, email: str, duplicate: bool, again: str) -> str:
    received = ("We had already received this message; it was not sent twice."
                if duplicate else "Thank you, we have received your message.")
    body = (
        f'<h1>Message received</h1>\n<div class="notice" role="status">\n<p>{escape(received)}</p>\n'
        f"<p>A confirmation email with your ticket number is on its way to "
        f"<strong>{escape(email)}</strong>. If it does not arrive within a few minutes, "
        f"check your spam folder.</p>\n</div>\n"
        f"<p>Your reference: <code>{escape(submission_id)}</code><br>"
        f"Quote it if you contact us about this message before the email arrives.</p>\n"
        f'<p><a href="{escape(again)}">Send another message</a></p>\n'
    )
    return _page(f"Message received: {form.title}", body)


def message_page(title: str, text: str, *, back: str | None = None) -> str:
    """A page that only says what went wrong and what to do (rate limited, unknown form, ...)."""
    link = f'<p><a href="{escape(back)}">Back to the form</a></p>\n' if back else ""
    body = f'<h1>{escape(title)}</h1>\n<div class="summary" role="alert"><p>{escape(text)}</p></div>\n{link}'
    return _page(title, body)
