"""The Twilio channels: SMS and WhatsApp messages (and their delivery status) through Twilio.

``channel``: the adapter; ``endpoints``: the webhooks; ``stored``: the request as the intake log
keeps it; ``parse``: stored request -> Envelope; ``numbers``: E.164 and Twilio's address forms;
``settings``: the ``twilio:`` section of the channels file; ``compose``: outbound drafts. The
sender is ``workers.senders.twilio``.
"""
