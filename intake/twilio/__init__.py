"""The Twilio channels: SMS, WhatsApp and voice, both ways.

``channel``: the adapter; ``endpoints``: the webhooks; ``stored``: the request as the intake log
keeps it; ``parse``: stored request -> Envelope; ``numbers``: E.164 and Twilio's address forms;
``settings``: the ``twilio:`` section of the channels file; ``compose``: outbound drafts (and the
WhatsApp 24-hour window); ``errors``: Twilio's error codes in words; ``media``: the runner that
fetches media and finishes calls; ``voice``: the call TwiML and the joining of a call's
callbacks. The sender is ``workers.senders.twilio``.
"""
