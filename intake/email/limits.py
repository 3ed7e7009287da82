"""Resource limits for parsing untrusted mail.

A parser fed by the open internet must bound what one message can cost: total size, header size,
MIME nesting and the number of parts. Exceeding any of them is not a bug in our code but a property
of the input, so it is reported as ``UnparseableMessage`` (the message is quarantined with the
reason, which names the limit and the value that broke it).
"""

from __future__ import annotations

from dataclasses import dataclass

from intake.errors import UnparseableMessage

__all__ = [
    "ParseLimits",
    "check_depth",
    "check_header_block",
    "check_parts",
    "check_size",
    "header_block_size",
]


@dataclass(frozen=True)
class ParseLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_depth: int = 20  # MIME nesting (multipart and message/rfc822 levels)
    max_parts: int = 500
    max_header_bytes: int = 256 * 1024  # one header block (top level or any part)


def check_size(size: int, limits: ParseLimits) -> None:
    if size > limits.max_bytes:
        raise UnparseableMessage(
            f"message too large: {size} bytes exceeds max_bytes={limits.max_bytes}"
        )


def header_block_size(raw: bytes) -> int:
    """Bytes before the first empty line (the whole message when there is none)."""
    if raw.startswith((b"\n", b"\r\n")):
        return 0
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    return min(ends) + 1 if ends else len(raw)


def check_header_block(size: int, limits: ParseLimits, where: str = "message") -> None:
    if size > limits.max_header_bytes:
        raise UnparseableMessage(
            f"header block too large: {where} has {size} header bytes, "
            f"exceeds max_header_bytes={limits.max_header_bytes}"
        )


def check_depth(depth: int, limits: ParseLimits) -> None:
    if depth > limits.max_depth:
        raise UnparseableMessage(
            f"MIME nesting too deep: depth {depth} exceeds max_depth={limits.max_depth}"
        )


def check_parts(count: int, limits: ParseLimits) -> None:
    if count > limits.max_parts:
        raise UnparseableMessage(
            f"too many MIME parts: more than {limits.max_parts} (max_parts={limits.max_parts})"
        )
