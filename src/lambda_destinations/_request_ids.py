"""Request ids as people give them: pasted with spaces, copied from an upper-cased view.

Lambda writes a request id as a lower-case UUID, and the store keys a record by it (or by
``REQUEST_ID:Condition``); what an operator types or puts in a URL is read the same way.
"""

from __future__ import annotations

import re

REQUEST_ID_LENGTH = 36
# 8-4-4-4-12 hexadecimal digits, in either case. Not uuid.UUID: it drops every hyphen and reads
# the rest with int(), which takes "_" between digits, a sign and other scripts' digits, so
# "7_f826c8-…", "+ef826c8-…" or 32 digits and 4 hyphens anywhere passed as a request id.
_HEX = "[0-9a-fA-F]"
_REQUEST_ID = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")


# One inside other text: not next to more hexadecimal digits or hyphens.
_REQUEST_ID_INSIDE = re.compile(f"(?<![0-9a-fA-F-]){_REQUEST_ID.pattern}(?![0-9a-fA-F-])")


def request_id_in(text: str) -> str | None:
    """The first request id written in ``text`` among other characters (in quotes or braces,
    after ``urn:uuid:``), in lower case; None when there is none."""
    found = _REQUEST_ID_INSIDE.search(text)
    return None if found is None else found.group().lower()


def is_request_id(text: str) -> bool:
    """Whether ``text`` is a Lambda request id: a UUID written 8-4-4-4-12."""
    return _REQUEST_ID.fullmatch(text) is not None


def stored_id(text: str) -> str:
    """A request id or a store key (``REQUEST_ID:Condition``) as the store has it: spaces
    around it dropped, and the request id in lower case (one copied from an upper-cased view
    was never found). Anything else is returned as it is, less the spaces."""
    text = text.strip()
    head, rest = text[:REQUEST_ID_LENGTH], text[REQUEST_ID_LENGTH:]
    if is_request_id(head) and (not rest or rest.startswith(":")):
        return head.lower() + rest
    return text


def may_arrive(text: str) -> bool:
    """Whether a record may yet come under ``text`` (as :func:`stored_id` gives it): a request
    id, or a store key ``REQUEST_ID:Condition``. None comes under anything else (an id cut
    short, a word): a wait for it would wait its whole time for nothing."""
    head, rest = text[:REQUEST_ID_LENGTH], text[REQUEST_ID_LENGTH:]
    return is_request_id(head) and (not rest or (rest.startswith(":") and len(rest) > 1))
