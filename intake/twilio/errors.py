"""Twilio's error codes: which ones a retry can cure, and words for the ones agents will see.

Codes from twilio.com/docs/api/errors. Only the common messaging ones are named; any other code is
shown with Twilio's own message.
"""

from __future__ import annotations

__all__ = ["WINDOW_CLOSED", "describe_error"]

# WhatsApp: a free-form message outside the 24-hour customer-service window.
WINDOW_CLOSED = 63016

_KNOWN = {
    "21211": "the 'To' number is not a valid phone number",
    "21408": "sending to this country is not enabled on the Twilio account",
    "21610": "the recipient has opted out (replied STOP); they must text START to receive messages again",
    "21614": "the 'To' number is not a mobile number that can receive SMS",
    "30003": "the recipient's handset is unreachable (switched off or out of coverage)",
    "30005": "the recipient's number is unknown or no longer exists",
    "30006": "the recipient's number is a landline or cannot receive this message",
    "30007": "the carrier filtered the message as spam",
    "30008": "the carrier reported an unknown delivery error",
    "63003": "the recipient's number is not on WhatsApp",
    str(WINDOW_CLOSED): ("the customer's last WhatsApp message is more than 24 hours old, so WhatsApp "
                         "accepts only an approved template; configure whatsapp_template for the "
                         "number in the channels file or answer on another channel"),
}


def describe_error(code: str | int, message: str = "") -> str:
    text = _KNOWN.get(str(code)) or message or "no description from Twilio"
    return f"error {code}: {text}"
