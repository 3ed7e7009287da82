"""Files shared in a customer's message: downloaded with the bot token into the blob store.

Slack's ``url_private_download`` needs the bot token as a Bearer header, so the token only ever
goes to Slack's file host (``files.slack.com``) or the configured API host (a local stand-in in
tests), never to a URL some payload names. Downloads happen at the edge, before the event is
logged, so the stored envelope holds blob references and a replay needs no Slack; they are
bounded (size and time) because Slack waits only 3 s for the answer. A file that cannot be had
is left out with a warning rather than losing the customer's message.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit

from intake.blobs import BlobStore
from intake.envelope import AttachmentRef

__all__ = ["download_files"]

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024
SLACK_FILE_HOSTS = frozenset({"files.slack.com"})


def download_files(files: Sequence[Any], *, token: str, api_base: str, blobs: BlobStore,
                   timeout: float = 2.0) -> list[dict[str, Any]]:
    """AttachmentRef dicts (as stored in the payload's meta) of the files that could be fetched."""
    allowed = SLACK_FILE_HOSTS | {urlsplit(api_base).netloc}
    out = []
    for item in files:
        if not isinstance(item, Mapping):
            continue
        url = str(item.get("url_private_download") or item.get("url_private") or "")
        if not url or urlsplit(url).netloc not in allowed or not token:
            log.warning("slack file %s not downloaded: %s", item.get("id"),
                        "no bot token" if not token else f"{urlsplit(url).netloc or 'no URL'} is not Slack's file host")
            continue
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read(MAX_FILE_BYTES + 1)
        except (URLError, OSError) as exc:
            log.warning("slack file %s not downloaded: %s", item.get("id"), exc)
            continue
        if len(data) > MAX_FILE_BYTES:
            log.warning("slack file %s not stored: larger than %d bytes", item.get("id"), MAX_FILE_BYTES)
            continue
        digest = blobs.put(data)
        out.append(AttachmentRef(sha256=digest, size=len(data),
                                 content_type=str(item.get("mimetype") or "application/octet-stream"),
                                 filename=str(item.get("name") or item.get("title") or "file")).model_dump())
    return out
