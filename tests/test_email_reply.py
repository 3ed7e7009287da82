"""split_reply: the new reply vs quoted history and signature, in the forms mail clients write."""

from __future__ import annotations

import pytest

from intake.email import html_to_text, split_reply
from intake.email.reply import is_forward_subject


def reply_of(text: str, **kwargs: object) -> str:
    return split_reply(text, **kwargs)[0]  # type: ignore[arg-type]


# -- attribution lines ("On ... wrote:") --------------------------------------------------------
@pytest.mark.parametrize(
    "attribution",
    [
        "On Mon, Mar 4, 2024 at 9:15 AM Support <support@omnidesk.test> wrote:",
        "On 4 Mar 2024, at 09:15, Support <support@omnidesk.test> wrote:",
        "On 04/03/2024 09:15, Support wrote:",
        "Am 04.03.2024 um 09:15 schrieb Support <support@omnidesk.test>:",
        "Am Mo., 4. März 2024 um 09:15 Uhr schrieb Support <support@omnidesk.test>:",
        "Le lun. 4 mars 2024 à 09:15, Support <support@omnidesk.test> a écrit :",
        "El lun, 4 mar 2024 a las 9:15, Support (<support@omnidesk.test>) escribió:",
        "Op ma 4 mrt. 2024 om 09:15 schreef Support <support@omnidesk.test>:",
        "Il giorno lun 4 mar 2024 alle ore 09:15 Support <support@omnidesk.test> ha scritto:",
        "Em seg., 4 de mar. de 2024 às 09:15, Support <support@omnidesk.test> escreveu:",
        "2024-03-04 9:15 GMT+01:00 Support <support@omnidesk.test>:",
        '04.03.2024 09:15 пользователь "Support" <support@omnidesk.test> написал:',
        "--- On Mon, 3/4/24, support@omnidesk.test <support@omnidesk.test> wrote:",
    ],
)
def test_attribution_then_quote(attribution: str) -> None:
    text = (
        f"Thanks, that fixed it.\n\nAna\n\n{attribution}\n\n> Please restart the printer.\n"
        f"> Support\n"
    )
    reply, history = split_reply(text)
    assert reply == "Thanks, that fixed it.\n\nAna"
    assert history.startswith(attribution) and "> Please restart" in history


def test_attribution_split_over_lines() -> None:
    text = (
        "Works now.\n\nOn Mon, Mar 4, 2024 at 9:15 AM Support Team\n<support@omnidesk.test>\n"
        "wrote:\n\n> Please restart the printer.\n"
    )
    assert reply_of(text) == "Works now."
    two_lines = (
        "Works now.\n\nOn Mon, Mar 4, 2024 at 9:15 AM Support <support@omnidesk.test>\n"
        "wrote:\n\nOld text, not quoted\n"
    )
    assert reply_of(two_lines) == "Works now."


def test_attribution_followed_by_unquoted_history_is_a_hard_cut() -> None:
    text = (
        "New text.\n\nOn Mon, 4 Mar 2024 at 09:15, Support <s@omnidesk.test> wrote:\n\n"
        "Old text\nmore old\n"
    )
    reply, history = split_reply(text)
    assert reply == "New text." and history.endswith("more old")


def test_sentences_that_merely_look_like_attributions_stay() -> None:
    text = "On your host you can run:\n\n    telnet 127.0.0.1 52698\n\nOne question I had:\nwhy?\n"
    assert reply_of(text) == text.strip("\n")
    text = "Thanks,\nAlex\nOn 26.06.2014 14:41, Alexander wrote:\n> Hello\n"
    assert reply_of(text) == "Thanks,\nAlex"


# -- Outlook and friends ------------------------------------------------------------------------
def test_outlook_original_message() -> None:
    text = (
        "Please cancel.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nTo: Ana\n"
        "Subject: Re: x\n\nold\n"
    )
    assert reply_of(text) == "Please cancel."
    spaced = "Please cancel.\n\n----- Original Message -----\nFrom: s@omnidesk.test\n\nold\n"
    assert reply_of(spaced) == "Please cancel."
    german = "Bitte stornieren.\n\n-----Ursprüngliche Nachricht-----\nVon: Support\n\nalt\n"
    assert reply_of(german) == "Bitte stornieren."


@pytest.mark.parametrize(
    "block",
    [
        (
            "From: Support [mailto:support@omnidesk.test]\n"
            "Sent: Monday, March 4, 2024 9:15 AM\nTo: Ana Lima\nSubject: RE: Printer"
        ),
        (
            "*From:* Support [mailto:support@omnidesk.test]\n"
            "*Sent:* Monday, March 4, 2024 9:15 AM\n*To:* Ana\n*Subject:* RE: Printer"
        ),
        (
            "Von: Support <support@omnidesk.test>\nGesendet: Montag, 4. März 2024 09:15\n"
            "An: Ana Lima\nBetreff: AW: Drucker"
        ),
        (
            "De : Support <support@omnidesk.test>\nEnvoyé : lundi 4 mars 2024 09:15\n"
            "À : Ana Lima\nObjet : RE: Imprimante"
        ),
        (
            "De: Support <support@omnidesk.test>\nEnviado: lunes, 4 de marzo de 2024 9:15\n"
            "Para: Ana Lima\nAsunto: RE: Impresora"
        ),
        (
            "Van: Support <support@omnidesk.test>\nVerzonden: maandag 4 maart 2024 09:15\n"
            "Aan: Ana Lima\nOnderwerp: RE: Printer"
        ),
        (
            "From: support@omnidesk.test\nTo: ana@customer.example\nCc:\n"
            "Sent: Monday, March 4, 2024 9:15 AM\nSubject: Printer"
        ),
        (
            "Date: Mon, 4 Mar 2024 09:15:00 +0100\nSubject: Printer\n"
            "From: support@omnidesk.test\nTo: ana@customer.example"
        ),
        (
            "________________________________\nFrom: Support <support@omnidesk.test>\n"
            "Sent: Monday, March 4, 2024 9:15 AM\nTo: Ana Lima\nSubject: RE: Printer"
        ),
    ],
)
def test_header_blocks(block: str) -> None:
    text = f"It works again, thank you!\n\n{block}\n\nDid you restart it?\n"
    reply, history = split_reply(text)
    assert reply == "It works again, thank you!"
    assert history.endswith("Did you restart it?")


def test_a_lone_to_line_is_not_a_header_block() -> None:
    text = "Please send it\nTo: my office\nFrom: Monday on\n"
    assert reply_of(text) == text.strip("\n")


# -- '>' quotes: top-posting, bottom-posting, inline -------------------------------------------
def test_quote_at_the_bottom_is_history() -> None:
    reply, history = split_reply("Yes, please.\n> Shall we call you?\n> Support\n")
    assert reply == "Yes, please." and history == "> Shall we call you?\n> Support"


def test_quote_at_the_top_is_history_too() -> None:
    text = "On 04/03/2024 09:15, Support wrote:\n> Shall we call you?\n\nYes, please.\n"
    assert reply_of(text) == "Yes, please."


def test_inline_reply_keeps_new_lines_with_their_context() -> None:
    text = (
        "On Mon, Support <s@omnidesk.test> wrote:\n> What model is it?\n\nAn HP 4200.\n\n"
        "> Is it connected by USB?\n\nNo, network.\n\n> Regards\n> Support\n\n-- \nAna\n"
    )
    reply, history = split_reply(text)
    assert reply.startswith("On Mon, Support <s@omnidesk.test> wrote:\n> What model is it?")
    assert "An HP 4200." in reply and reply.endswith("No, network.")
    assert "> Regards" in history and "Ana" in history


def test_all_quoted_body_is_kept_whole() -> None:
    text = "> just a quote\n> nothing new\n"
    assert reply_of(text) == text.strip("\n")


# -- signatures -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "signature",
    [
        "Sent from my iPhone",
        "Sent from my BlackBerry® wireless device",
        "Sent from my Verizon Wireless BlackBerry",
        "Sent from my Android phone with GMX Mail. Please excuse my brevity.",
        "Sent from my Samsung Galaxy smartphone.",
        "Get Outlook for Android",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Verzonden vanaf mijn iPhone",
    ],
)
def test_mobile_signatures(signature: str) -> None:
    text = (
        f"Printer is fine now.\n\n{signature}\n\n"
        f"On Mon, 4 Mar 2024, Support <s@omnidesk.test> wrote:\n> x\n"
    )
    reply, history = split_reply(text)
    assert reply == "Printer is fine now."
    assert history.startswith(signature)
    assert reply_of(text, strip_signature=False) == f"Printer is fine now.\n\n{signature}"


def test_sent_from_my_in_a_sentence_is_content() -> None:
    text = "Here is another email\n\nSent from my desk, is much easier then my mobile phone.\n"
    assert reply_of(text) == text.strip("\n")


def test_dash_dash_signature() -> None:
    assert reply_of("Thanks!\n\n-- \nAna Lima\nACME Corp\n+49 30 1234567\n") == "Thanks!"
    assert reply_of("Thanks!\n--\nAna\n") == "Thanks!"
    assert (
        reply_of("this uses -- in the middle of a line.\n")
        == "this uses -- in the middle of a line."
    )


def test_mailing_list_footer() -> None:
    text = (
        "Hi folks\n\nQuestion?\n\n_______________________________________________\n"
        "list mailing list\nlist@lists.example\nhttps://lists.example/listinfo\n"
    )
    assert reply_of(text) == "Hi folks\n\nQuestion?"


def test_signature_only_message_is_kept() -> None:
    assert reply_of("-- \nAna Lima\n") == "-- \nAna Lima"


# -- forwards are content ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "marker",
    [
        "---------- Forwarded message ---------",
        "-------- Forwarded Message --------",
        "Begin forwarded message:",
        "---------- Weitergeleitete Nachricht ----------",
        "-------- Message transféré --------",
        "---------- Mensaje reenviado ----------",
    ],
)
def test_forward_markers_are_not_quotes(marker: str) -> None:
    text = (
        f"See below, the amount is wrong.\n\n{marker}\nFrom: Billing <b@vendor.example>\n"
        "Date: Mon, 4 Mar 2024\nSubject: Invoice\nTo: ana@customer.example\n\n"
        "Total due: 117 EUR\n\nOn Sun, Billing wrote:\n> older\n"
    )
    reply, history = split_reply(text)
    assert reply == text.strip("\n") and history == ""


def test_outlook_forward_is_kept_when_the_subject_says_forward() -> None:
    text = (
        "FYI\n\nFrom: Billing <b@vendor.example>\nSent: Monday, March 4, 2024 9:15 AM\n"
        "To: Ana\nSubject: Invoice\n\nTotal due: 117 EUR\n"
    )
    assert reply_of(text) == "FYI"
    assert reply_of(text, subject="FW: Invoice") == text.strip("\n")
    assert reply_of(text, subject="WG: Invoice") == text.strip("\n")


@pytest.mark.parametrize(
    ("subject", "forward"),
    [("Fwd: x", True), ("FW: x", True), ("WG: x", True), ("TR: x", True), ("[OD-1] Fwd: x", True),
     ("Re: x", False), ("AW: x", False), ("Forward planning", False), ("", False)],
)  # fmt: skip
def test_is_forward_subject(subject: str, forward: bool) -> None:
    assert is_forward_subject(subject) is forward


# -- odd input ---------------------------------------------------------------------------------
def test_crlf_and_empty_input() -> None:
    assert split_reply("") == ("", "")
    reply, history = split_reply("Hi\r\n\r\nOn Mon, 4 Mar 2024, A <a@b.example> wrote:\r\n> x\r\n")
    assert reply == "Hi" and history.endswith("> x")


def test_html_reply_through_text() -> None:
    html = (
        '<div dir="ltr">Fine, thanks.<br></div><br><div class="gmail_quote"><div dir="ltr">'
        'On Mon, Mar 4, 2024 at 9:15 AM Support &lt;<a href="mailto:s@omnidesk.test">'
        's@omnidesk.test</a>&gt; wrote:<br></div><blockquote class="gmail_quote">How are you?'
        "</blockquote></div>"
    )
    assert reply_of(html_to_text(html)) == "Fine, thanks."


def test_pathological_input_is_linear() -> None:
    # Many lines that start like attributions but never finish, and long runs of quote marks:
    # bounded per-line patterns keep this cheap (pytest-timeout guards the suite).
    text = ("On " + "x" * 200 + "\n") * 2000 + (">" * 500 + "\n") * 2000 + "end\n"
    reply, _ = split_reply(text)
    assert reply.endswith("end")
