"""The agent API: ``/api/...``, JSON, described at ``/openapi.json``.

Agents and integrations work tickets from the first message to the resolution: list and read
tickets with their timelines, change them, reply through the customer's channel, write internal
notes, escalate, merge and link; manage contacts and (admins) agents. Routes are thin: each calls
one plain function of ``tickets`` inside one transaction.
"""

from api.app import API_PREFIX, REQUEST_ID_HEADER, install_api
from api.context import ApiContext
from api.errors import ApiError, Conflict, Forbidden, Invalid, NotFound, PreconditionFailed, Unauthorized

__all__ = [
    "API_PREFIX",
    "REQUEST_ID_HEADER",
    "ApiContext",
    "ApiError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PreconditionFailed",
    "Unauthorized",
    "install_api",
]
