"""One outbound sender per channel, all with the shape of ``workers.outbox.Sender``."""

from workers.senders.email import FileDropSender, SmtpSender, compose_email, email_sender_from_url

__all__ = ["FileDropSender", "SmtpSender", "compose_email", "email_sender_from_url"]
