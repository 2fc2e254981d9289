"""The built-in ``sms`` handler: a text message per record (or per digest), via SNS ``Publish``.

::

    [handlers.oncall-sms]
    type = "sms"
    phone_numbers = ["+14155552671", "+33612345678"]   # E.164, checked at start
    sms_type = "Transactional"                          # or "Promotional"
    sender_id = "OrdersOps"                             # where the country supports it
    message = "{function_name} failed ({condition}): {error_type}"
    max_segments = 2                                    # SMS parts the text may take
    window = "5m"                                       # alert storms: see storm.py
    send_first = 3

The text is cut to ``max_segments`` SMS segments (and to the 1,600 bytes of UTF-8 SNS takes in a
``Publish``) on a character boundary, with an ellipsis:
GSM-7 text takes 160 characters in one segment and 153 a segment when split (the characters of
GSM's extension table, such as ``€[]{}``, count twice); any other character makes it UCS-2, 70
and 67 UTF-16 units (an emoji counts twice). Before it is cut, line ends become line feeds,
other control characters spaces and lone surrogates ``?`` (:func:`sms_text`). Each number gets
its own ``Publish``; with several numbers each one is recorded as sent, so a retry after a
partial failure sends only to the rest, and a number that fails does not keep the text from the
numbers after it (each is tried; the run then fails for the one). SNS throttling and 5xx errors
are retried; a number SNS refuses is permanent. (SNS takes a ``Publish`` to an opted-out number
and delivers nothing: ``doctor`` names such numbers.)
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from pydantic import Field, field_validator

from lambda_destinations._text import line_feeds
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers import storm
from lambda_destinations.handlers.base import HandlerContext, delivery_of
from lambda_destinations.handlers.in_doubt import RESEND, InDoubt, is_in_doubt, sending
from lambda_destinations.handlers.storm import DEFAULT_DIGEST, DIGEST_FIELDS
from lambda_destinations.handlers.templates import (
    NonBlank,
    Template,
    parse_options,
    record_fields,
)
from lambda_destinations.redact import ascii_digits, mask_phone, mask_typed_phone
from lambda_destinations.retrying import classify, describe_error

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.aws import AwsClients
    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.jobs import JobContext
    from lambda_destinations.schemas import DecodedMessage
    from lambda_destinations.store import Store

DEFAULT_MESSAGE = "{summary:.300} [{request_id}]"

# -- SMS segments -------------------------------------------------------------------------------

# GSM 03.38: the basic character set (one septet each) and the extension table (two: an escape
# and the character).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")
# Units in one segment, and in each segment of a split message (the rest is the UDH header).
GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
# What SNS takes in one Publish to a phone number: "1,600 bytes" (its developer guide; the API
# reference says characters). Ten segments of text whose characters take two or three bytes in
# UTF-8 ("é", "€", "中") go past it, where SNS would refuse the whole text.
SNS_MAX_BYTES = 1600


def is_gsm(text: str) -> bool:
    """Whether ``text`` can be sent in the GSM-7 alphabet."""
    return all(char in GSM_BASIC or char in GSM_EXTENDED for char in text)


def _units(text: str, gsm: bool) -> list[int]:
    if gsm:
        return [2 if char in GSM_EXTENDED else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def count_segments(text: str) -> int:
    """How many SMS segments ``text`` takes (at least 1).

    A character never straddles two segments: an extension character (two septets) or a
    surrogate pair that does not fit at the end of a segment starts the next one.
    """
    gsm = is_gsm(text)
    units = _units(text, gsm)
    if sum(units) <= (GSM_SINGLE if gsm else UCS2_SINGLE):
        return 1
    size = GSM_PART if gsm else UCS2_PART
    segments, used = 1, 0
    for unit in units:
        if used + unit > size:
            segments, used = segments + 1, 0
        used += unit
    return segments


def _is_regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _is_joined(text: str, index: int) -> bool:
    """Whether ``text[index]`` belongs to the character before it, so that a cut there would
    split what is read as one: a mark (an accent, or one of category M that has no combining
    class, as a Devanagari vowel sign or a keycap), a joiner, a variation selector, a skin
    tone, a tag (a subdivision flag), what follows a zero-width joiner, the second half of a
    flag (regional indicators pair from the start of their run) or a Hangul vowel or final
    consonant jamo."""
    char, before = text[index], text[index - 1]
    if unicodedata.category(char).startswith("M") or before == "\u200d":
        return True
    if char in "\u200d\ufe0e\ufe0f" or "\U0001f3fb" <= char <= "\U0001f3ff":
        return True
    if "\U000e0020" <= char <= "\U000e007f" or "\u1160" <= char <= "\u11ff":
        return True
    if _is_regional(char):
        run = index
        while run > 0 and _is_regional(text[run - 1]):
            run -= 1
        return (index - run) % 2 == 1
    return False


def _fits(text: str, max_segments: int) -> bool:
    """Whether ``text`` takes at most ``max_segments`` segments and SNS_MAX_BYTES bytes."""
    size = len(text.encode("utf-8", "surrogatepass"))
    return size <= SNS_MAX_BYTES and count_segments(text) <= max_segments


def fit_segments(text: str, max_segments: int) -> str:
    """``text`` cut to ``max_segments`` segments, and to the SNS_MAX_BYTES bytes of UTF-8 SNS
    takes, on a character boundary, with an ellipsis ("..." in GSM-7, "…" otherwise, so the
    cut never changes the encoding for the worse).

    The cut backs off to the start of a combined character (an accent, a vowel sign, an emoji
    sequence, a flag), and to the end of a word when one ends in the last 15 characters.
    """
    if _fits(text, max_segments):
        return text

    def candidate(length: int) -> str:
        prefix = text[:length].rstrip()
        return prefix + ("..." if is_gsm(prefix) else "…")

    # The longest prefix that fits with its ellipsis (segments and bytes only grow with it).
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if _fits(candidate(middle), max_segments):
            low = middle
        else:
            high = middle - 1
    length = low
    while 0 < length < len(text) and _is_joined(text, length):
        length -= 1
    space = text.rfind(" ", max(0, length - 15), length + 1)
    if space > 0:
        length = space
    return candidate(length)


# What a text message shows as a space, once line ends are line feeds: the C0 controls but line
# feed (GSM-7 has no tab; a NUL or an ESC is no text), DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# What it shows as "?": the bidi embeddings, overrides and isolates (they reorder what is read
# around them, as in an email's values; the marks U+200E, U+200F stay) and lone surrogates.
_UNSENDABLE = re.compile("[\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# What it leaves out: the invisible characters that show nothing and join nothing, the byte
# order mark (U+FEFF, at the start of a file's text), the zero-width space, the word joiner and
# the soft hyphen. Any of them made GSM-7 text UCS-2: 70 characters a segment, not 160.
_INVISIBLE = re.compile("[\u00ad\u200b\u2060\ufeff]")


def sms_text(text: str) -> str:
    """``text`` as an SMS carries it: each line end (CR LF, CR, NEL, U+2028, U+2029, vertical
    tab, form feed) a line feed, every other control character a space, each bidi
    embedding, override or isolate and each lone surrogate ``?``, and no byte order mark,
    zero-width space, word joiner or soft hyphen (:data:`_INVISIBLE`).

    A lone surrogate (JSON can spell one in a record) has no UTF-8, so SNS's request cannot
    carry it; ``?`` is what GSM-7 text puts for a character it lacks, where U+FFFD would make
    the whole text UCS-2 (70 characters a segment, not 160). Applied before the text is cut to
    its segments, so that what is counted is what is sent.
    """
    return _UNSENDABLE.sub("?", _CONTROL.sub(" ", _INVISIBLE.sub("", line_feeds(text))))


# -- settings -----------------------------------------------------------------------------------

_SENDER_ID = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}")


class SmsOptions(storm.NotifierOptions):
    """The ``[handlers.NAME]`` table of an ``sms`` handler."""

    phone_numbers: list[str] = Field(min_length=1, max_length=100)
    sms_type: Literal["Transactional", "Promotional"] = "Transactional"
    sender_id: str | None = None
    origination_number: str | None = None
    message: str = DEFAULT_MESSAGE
    digest_message: str = storm.DEFAULT_DIGEST
    max_segments: int = Field(default=2, ge=1, le=10)

    @field_validator("phone_numbers", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        value = [value] if isinstance(value, (str, int)) else value
        return [_digits(number) for number in value] if isinstance(value, list) else value

    @field_validator("origination_number", mode="before")
    @classmethod
    def _short_code(cls, value: object) -> object:
        return _digits(value)

    @field_validator("sms_type", mode="before")
    @classmethod
    def _capitalised(cls, value: object) -> object:
        return value.strip().capitalize() if isinstance(value, str) else value

    @field_validator("sender_id")
    @classmethod
    def _sender_id(cls, value: str | None) -> str | None:
        if value is not None and not _SENDER_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a sender id: 1 to 11 letters and digits, at least one letter"
            )
        return value


def _digits(value: object) -> object:
    """A number written without quotes (TOML's ``12345``, JSON's) as its digits, so that it
    is read, and refused or taken, as the same digits in quotes are: a short code, or a number
    that lacks its ``+``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _echoed_number(number: str) -> str:
    """``number`` as an error line repeats it: masked as logs mask one (``'+14*****2671'``),
    where the line's redaction, reading E.164 in one piece, leaves one whole when spaced
    (``+1 415 555 267``) or national (``(415) 555-2671``)."""
    return repr(mask_typed_phone(number))


# International dialling prefixes a number may be written with in place of E.164's +: 00 (most
# of the world) and 011 (North America).
_DIALLING_PREFIX = re.compile(r"\s*(00|011)(?=[\s\d])")


def _no_country_code(number: str) -> str:
    """Why ``number``, which phonenumbers reads no country calling code in, is no number."""
    if number.strip().startswith("+"):  # phonenumbers: "Could not interpret numbers after +"
        return "no country has the calling code after its +"
    if (prefix := _DIALLING_PREFIX.match(ascii_digits(number))) is not None:
        return f"it starts with {prefix.group(1)}, a dialling prefix, where E.164 has +"
    return "it has no country calling code"


def _refuse_several(number: str, where: str) -> None:
    """ConfigError naming ``where`` when ``number`` holds several numbers in one string
    (``"+14155552671,+33612345678"``, as a variable lists them), which phonenumbers reads as no
    number at all: "write it in international form" would not say what is wrong."""
    count = len(re.findall("[+\uff0b]", number))
    if count < 2:
        return
    fix = (
        'write each as its own string of the list: ["+1 415 555 2671", "+33 6 12 34 56 78"]'
        if "phone_numbers" in where
        else "give one"
    )
    raise ConfigError(f"{where}: {_echoed_number(number)} holds {count} numbers: {fix}")


# A letter of any script, and the scheme of an RFC 3966 number ("tel:+14155552671"), the one
# place letters are taken.
_LETTER = re.compile(r"[^\W\d_]")
_TEL_URI = re.compile(r"^\s*tel:", re.IGNORECASE)


def e164(number: str, where: str) -> str:
    """``number`` in E.164 form (``+14155552671``), or ConfigError naming ``where``."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        _refuse_several(number, where)
        why = str(exc).split(") ", 1)[-1]
        if exc.error_type == exc.INVALID_COUNTRY_CODE:
            # phonenumbers says "Missing or invalid default region." of a number without +
            why = _no_country_code(number)
        # The example is spaced: the line is redacted, and a phone number in it masked
        # ("+14*****2671"), the example too when written in one piece.
        raise ConfigError(
            f"{where}: {_echoed_number(number)} is not a phone number ({why}); write it in "
            "international form, such as +1 415 555 2671"
        ) from None
    if parsed.extension:
        # E.164 has no extension, nor does a text message reach one: the number without it
        # is a switchboard's, where no one reads the alert.
        raise ConfigError(
            f"{where}: {_echoed_number(number)} has an extension, which no text message "
            "reaches: write the number without it, a mobile's"
        )
    if _LETTER.search(_TEL_URI.sub("", number)):
        # phonenumbers reads letters as a keypad's digits ("FLOW": 3569) and drops one after
        # the number ("+14155552671a"): the text would go to digits no one wrote.
        raise ConfigError(
            f"{where}: {_echoed_number(number)} has letters, which would be texted as a "
            "keypad's digits or dropped: write it in digits, such as +1 415 555 2671"
        )
    if not phonenumbers.is_valid_number(parsed):
        raise ConfigError(
            f"{where}: {_echoed_number(number)} is not a valid phone number for its country"
        )
    if parsed.country_code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        # +800, +808, +870, +878, +881, +882, +883, +888, +979: no country's, and SNS sends
        # no SMS to them (each Publish failed at AWS)
        raise ConfigError(
            f"{where}: {_echoed_number(number)} is an international network's (+800 to +979: "
            "freephone, shared-cost, satellite, premium), which SNS sends no SMS to or from: "
            "give a country's mobile number"
        )
    formatted: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return formatted


# A short code as AWS's origination identities take one: 4 to 7 digits, the first not 0
# (their pattern is \+?[1-9][0-9]{1,18}; SNS's guide: "between four and seven digits").
_SHORT_CODE = re.compile(r"[1-9][0-9]{3,6}")


def origination_number(number: str, where: str) -> str:
    """``number`` as SNS's ``AWS.MM.SMS.OriginationNumber`` takes it: a short code's digits
    as they are (in ASCII, whatever the script of its digits, as a phone number's are read),
    any other number in E.164 form (:func:`e164`)."""
    digits = ascii_digits(number.strip())
    if _SHORT_CODE.fullmatch(digits):
        return digits
    if digits.isdigit():
        raise ConfigError(
            f"{where}: {_echoed_number(number)} is neither a short code nor a phone number: a "
            "short code is 4 to 7 digits, not starting with 0; a number is in international "
            "form, such as +1 415 555 2671"
        )
    return e164(number, where)


# -- the handler --------------------------------------------------------------------------------


class SmsHandler(storm.Notifier):
    """Publishes one SMS per number for a record, or for a window's digest."""

    def __init__(
        self,
        name: str,
        *,
        phone_numbers: Sequence[str],
        message: Template,
        digest_message: Template,
        max_segments: int,
        storm: storm.StormPolicy,
        attributes: dict[str, Any],
        in_doubt: InDoubt = RESEND,
    ) -> None:
        self.name = name
        self.in_doubt = in_doubt
        self.phone_numbers = tuple(phone_numbers)
        self.message = NonBlank(message, DEFAULT_MESSAGE)
        self.digest_message = NonBlank(digest_message, DEFAULT_DIGEST, allowed=DIGEST_FIELDS)
        self.max_segments = max_segments
        self.storm = storm
        self.attributes = attributes

    async def notify(self, message: DecodedMessage, context: HandlerContext) -> None:
        fields = record_fields(message, context)
        text = self._text(self.message.render(fields, context.log))
        # One number: the handler's own completion is the record of it. Several: each is
        # recorded as sent, so a retry after a partial failure skips those.
        delivery = delivery_of(context)
        await self._send(
            text,
            key=context.key,
            owner=delivery.owner,
            store=delivery.store,
            aws=delivery.aws,
            log=context.log,
            each_once=len(self.phone_numbers) > 1,
            context=context,
        )

    async def send_digest(self, digest: storm.Digest, context: JobContext) -> None:
        text = self._text(self.digest_message.render(digest.fields(), context.log))

        async def send() -> None:
            await self._send(
                text,
                key=context.job.key,
                owner=context.owner,
                store=context.store,
                aws=context.aws,
                log=context.log,
                each_once=True,
            )

        await storm.retry_digest(send, context)

    def _text(self, rendered: str) -> str:
        """What is sent: ``rendered`` as :func:`sms_text` makes it (a lone surrogate left in
        would fail every send of the record until it reached the DLQ), within
        ``max_segments``."""
        return fit_segments(sms_text(rendered), self.max_segments)

    async def _send(
        self,
        text: str,
        *,
        key: str,
        owner: str,
        store: Store,
        aws: AwsClients,
        log: FilteringBoundLogger,
        each_once: bool,
        context: HandlerContext | None = None,
    ) -> None:
        sns = await aws.sender("sns")
        completed = await store.completed_handlers(key) if each_once else frozenset()
        failed: list[Exception] = []
        for number in self.phone_numbers:
            step = f"{self.name}#{number}"
            publish = functools.partial(
                self._publish, sns, number, text, log, context, step if each_once else None
            )
            try:
                if each_once:
                    await storm.send_once(store, key, step, owner, publish, completed=completed)
                else:
                    await publish()
            except Exception as exc:  # noqa: BLE001 - raised after the other numbers
                # A number SNS refuses (a country it does not text, the sandbox's) must not keep
                # the alert from the numbers after it: they are texted (and recorded), then
                # the run fails for this one.
                failed.append(exc)
                if each_once:
                    log.warning(
                        "SMS not sent",
                        handler=self.name,
                        to=mask_phone(number),
                        error=describe_error(exc),
                    )
        if failed:
            # One that may pass when tried again first: the message is retried, not
            # quarantined, while a number may still be reached.
            raise next((exc for exc in failed if classify(exc) != "permanent"), failed[0])

    async def _publish(
        self,
        sns: Any,
        number: str,
        text: str,
        log: FilteringBoundLogger,
        context: HandlerContext | None,
        step: str | None,
    ) -> None:
        # SNS Publish to a phone number takes no idempotency token: a lost answer is in doubt.
        what = f"SMS to {mask_phone(number)}"
        try:
            with sending(context, self.in_doubt, what, step=step):
                response = await sns.publish(
                    PhoneNumber=number, Message=text, MessageAttributes=self.attributes
                )
        except Exception as exc:
            if not is_in_doubt(exc):
                raise
            self.settle(what, exc, context=context, log=log)
            return
        log.info(
            "SMS sent",
            handler=self.name,
            to=mask_phone(number),
            segments=count_segments(text),
            sns_message_id=response.get("MessageId"),
        )


def build(name: str, options: dict[str, Any], settings: Settings) -> SmsHandler:
    parsed = parse_options(SmsOptions, name, options)
    numbers = [
        e164(number, f"handlers.{name}.phone_numbers[{index}]")
        for index, number in enumerate(parsed.phone_numbers)
    ]
    attributes: dict[str, Any] = {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": parsed.sms_type}
    }
    if parsed.sender_id is not None:
        attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": parsed.sender_id}
    if parsed.origination_number is not None:
        attributes["AWS.MM.SMS.OriginationNumber"] = {
            "DataType": "String",
            "StringValue": origination_number(
                parsed.origination_number, f"handlers.{name}.origination_number"
            ),
        }
    return SmsHandler(
        name,
        phone_numbers=list(dict.fromkeys(numbers)),
        message=Template.compile(parsed.message, where=f"handlers.{name}.message"),
        digest_message=Template.compile(
            parsed.digest_message,
            where=f"handlers.{name}.digest_message",
            allowed=storm.DIGEST_FIELDS,
        ),
        max_segments=parsed.max_segments,
        storm=parsed.storm,
        attributes=attributes,
        in_doubt=parsed.in_doubt,
    )
