"""Each CRM's delivery: how it proves where it comes from, and what its items are (docs/integrations.md).

Everything here is pure over the bytes received and the clock reading handed in; the secrets are read
from the environment variables the document names, at each delivery, so a rotated secret needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import orjson
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from levelup.errors import FieldError, Invalid, TooLarge, Unauthorized
from levelup.events.schema import MAX_BATCH
from levelup.programs.document import Setting, Source

logger = logging.getLogger("levelup")

MAX_ITEMS = MAX_BATCH
SIGNATURE_WINDOW_S = 300  # HubSpot's documented window; the same for Levelup-Signature
SOAP_OUTBOUND = "{http://soap.sforce.com/2005/09/outbound}"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
# HubSpot signs the URI with these escapes decoded (its v3 validation guide lists them)
HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
SOAP_ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse>'
    b"</soapenv:Body></soapenv:Envelope>"
)


class NotConfigured(Unauthorized):
    """The server lacks a secret the source names: no delivery can be checked, so none is taken."""

    code = "source_not_configured"


@dataclass(frozen=True)
class Delivery:
    """One request to a source as received: ``url`` is the one the sender signed, ``headers`` lower-case."""

    program: str
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    now: float  # unix seconds


@dataclass(frozen=True)
class Received:
    """A delivery that passed its check: its items, and whether the sender wants a SOAP acknowledgement."""

    items: list[Any]
    soap: bool = False


def setting(delivery: Delivery, source: Source, which: Setting | None, what: str) -> str:
    """The value of an environment variable the document names; NotConfigured (and a log line) if unset."""
    value = os.environ.get(which.env) if which is not None else None
    if not value:
        named = f"environment variable {which.env}" if which is not None else "setting"
        logger.error("source %s of program %s: the %s (%s) is not set", source.key, delivery.program, named, what)
        raise NotConfigured(f"source {source.key!r} is not configured on this server: its {what} is missing")
    return value


def receive(source: Source, delivery: Delivery) -> Received:
    """Check the delivery with the vendor's scheme and split it into items; Unauthorized if it fails."""
    if source.kind == "salesforce" and _is_soap(delivery):
        organization = setting(delivery, source, source.organization, "organization id")
        return Received(_outbound_message(organization, delivery.body), soap=True)
    secret = setting(delivery, source, source.secret, "secret")
    if source.kind == "hubspot":
        _check_hubspot(secret, delivery)
        return Received(_items(_json(delivery.body)))
    if source.kind == "pipedrive":
        _check_basic(secret, delivery)
        return Received([_json(delivery.body)])
    if source.kind == "zoho":
        body = _json(delivery.body)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), secret.encode()):
            raise Unauthorized("the notification token does not match the source's secret")
        return Received(_zoho_items(body))
    check_levelup_signature(secret, delivery.headers.get("levelup-signature"), delivery.body, delivery.now)
    return Received(_items(_json(delivery.body)))


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid("body is not valid JSON", errors=[FieldError("(body)", str(exc))]) from None


def _items(body: Any) -> list[Any]:
    """A JSON array is a list of items, anything else one item."""
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_ITEMS:
        raise TooLarge(f"at most {MAX_ITEMS} items a delivery", errors=[FieldError("(body)", f"{len(items)} items")])
    return items


def _check_hubspot(secret: str, delivery: Delivery) -> None:
    signature = delivery.headers.get("x-hubspot-signature-v3")
    timestamp = delivery.headers.get("x-hubspot-request-timestamp", "")
    if not signature or not timestamp.isdigit():
        raise Unauthorized("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required")
    if abs(delivery.now - int(timestamp) / 1000) > SIGNATURE_WINDOW_S:
        raise Unauthorized(f"the delivery's timestamp is more than {SIGNATURE_WINDOW_S} s away from now")
    uri = delivery.url
    for escaped, plain in HUBSPOT_DECODED.items():
        uri = uri.replace(escaped, plain).replace(escaped.lower(), plain)
    signed = delivery.method.encode() + uri.encode() + delivery.body + timestamp.encode()
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        raise Unauthorized("X-HubSpot-Signature-v3 does not match")


def _check_basic(secret: str, delivery: Delivery) -> None:
    scheme, _, encoded = delivery.headers.get("authorization", "").partition(" ")
    try:
        presented = base64.b64decode(encoded.strip(), validate=True) if scheme.lower() == "basic" else b""
    except (binascii.Error, ValueError):
        presented = b""
    if not presented or not hmac.compare_digest(presented, secret.encode()):
        raise Unauthorized("HTTP Basic credentials missing or wrong")


def levelup_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Levelup-Signature`` header of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def check_levelup_signature(secret: str, header: str | None, body: bytes, now: float) -> None:
    """``t=<unix>,v1=<hex>``: any ``v1`` may match (a sender rotating secrets signs with both)."""
    parts = [p.strip().partition("=") for p in (header or "").split(",")]
    timestamps = [v for k, _, v in parts if k == "t"]
    signatures = [v for k, _, v in parts if k == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        raise Unauthorized("Levelup-Signature is missing or malformed (t=<unix seconds>,v1=<hex>)")
    timestamp = int(timestamps[0])
    if abs(now - timestamp) > SIGNATURE_WINDOW_S:
        raise Unauthorized(f"the signature's timestamp is more than {SIGNATURE_WINDOW_S} s away from now")
    expected = levelup_signature(secret, body, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise Unauthorized("Levelup-Signature does not match")


def _zoho_items(body: Any) -> list[Any]:
    """One item per record id: the notification without its token, with that record's ``id``, the
    ``values`` it changed (``affected_values``) and the ``fields`` named (``affected_fields``)."""
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise Invalid("a Zoho notification lists its records in ids", errors=[FieldError("ids", "expected a list")])
    common = {k: v for k, v in body.items() if k not in ("token", "ids", "affected_values", "affected_fields")}
    values = {v.get("record_id"): v.get("values", {}) for v in body.get("affected_values") or [] if isinstance(v, dict)}
    fields: dict[Any, Any] = {}
    for entry in body.get("affected_fields") or []:
        if isinstance(entry, dict):
            fields.update(entry)
    return _items([{**common, "id": i, "values": values.get(i, {}), "fields": fields.get(i, [])} for i in ids])


def _is_soap(delivery: Delivery) -> bool:
    return "xml" in delivery.headers.get("content-type", "") or delivery.body.lstrip().startswith(b"<")


def _outbound_message(organization: str, body: bytes) -> list[Any]:
    """The sObject of each Notification, its fields by name; refused unless sent by ``organization``.

    Ids are compared on their first 15 characters: an 18-character id is the 15-character one and a
    checksum, and either may be configured."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException) as exc:
        raise Invalid("body is not a SOAP Outbound Message", errors=[FieldError("(body)", str(exc))]) from None
    notifications = root.find(f".//{SOAP_OUTBOUND}notifications")
    if notifications is None:
        raise Invalid("body is not a SOAP Outbound Message", errors=[FieldError("(body)", "no notifications")])
    sent_by = (notifications.findtext(f"{SOAP_OUTBOUND}OrganizationId") or "").strip()
    if not hmac.compare_digest(sent_by[:15].encode(), organization.strip()[:15].encode()):
        raise Unauthorized("the Outbound Message's OrganizationId is not the source's organization")
    return _items(
        [_fields(n.find(f"{SOAP_OUTBOUND}sObject")) for n in notifications.findall(f"{SOAP_OUTBOUND}Notification")]
    )


def _fields(element: Element | None) -> dict[str, Any]:
    if element is None:
        return {}
    fields: dict[str, Any] = {}
    for child in element:
        name = child.tag.rpartition("}")[2]
        if child.get(XSI_NIL) == "true":
            fields[name] = None
        elif len(child):
            fields[name] = _fields(child)
        else:
            fields[name] = child.text or ""
    return fields
