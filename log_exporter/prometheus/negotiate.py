"""Content negotiation on the telemetry path: a request's ``Accept`` header chooses the encoder,
its content type and whether exemplars are collected at all; ``Accept-Encoding`` whether the
answer is gzipped.

The protobuf exposition is chosen as client_golang chooses it (``expfmt.Negotiate``), which is
what Prometheus asks for when native histograms are enabled: the media ranges in order of
quality, the first one of a format we write decides. For the text formats the choice is then
client_python's (``choose_encoder``), so a client gets what it would get from any client_python
exporter. Only the rendering differs: OpenMetrics through our own encoder
(the same bytes), and the text format, which has no exemplars, collected without them
(``Registry.collect(exemplars=False)``), the choice passed down as an argument.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from log_exporter.prometheus.collector import Registry
from log_exporter.prometheus.encoder import OpenMetricsEncoder, TextEncoder
from log_exporter.prometheus.protobuf import CONTENT_TYPE as PROTOBUF
from log_exporter.prometheus.protobuf import ProtobufEncoder

__all__ = ["Encoder", "accepts_gzip", "select_encoder", "wants_protobuf"]

# Renders a registry to the bytes of one page, as client_python's encoders do.
Encoder = Callable[[CollectorRegistry], bytes]


def accepts_gzip(header: str | None) -> bool:
    """True when an ``Accept-Encoding`` header allows gzip (``q=0`` refuses it)."""
    if not header:
        return False
    for part in header.split(","):
        coding, *params = part.split(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        for param in params:
            # RFC 9110: parameter names are case-insensitive, so Q=0 refuses gzip too.
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value.strip()) > 0
                except ValueError:
                    return False
        return True
    return False


def wants_protobuf(accept: str) -> bool:
    """True when the first media range of ``accept`` among the formats served, in client_golang's
    order (higher ``q`` first, then the one with more parameters, then header order), is
    length-delimited ``io.prometheus.client.MetricFamily`` protobuf."""
    if "protobuf" not in accept:
        return False  # the common case, decided without parsing
    ranges: list[tuple[float, int, int, bool]] = []
    for i, part in enumerate(accept.split(",")):
        media, *raw = part.split(";")
        params = {}
        for p in raw:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        media = media.strip().lower()
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            continue
        if q <= 0:
            continue
        if media == "application/vnd.google.protobuf":
            if params.get("proto") == "io.prometheus.client.MetricFamily":
                ranges.append((-q, -len(params), i, params.get("encoding") == "delimited"))
        elif media in ("text/plain", "application/openmetrics-text"):
            ranges.append((-q, -len(params), i, False))
    return bool(ranges) and min(ranges)[3]


_PROTOBUF = ProtobufEncoder()


def select_encoder(accept: str) -> tuple[Encoder, str]:
    """``choose_encoder``'s format for an Accept header, rendered without needless escaping.

    Under OpenMetrics' default ``escaping=underscores`` prometheus_client rewrites every sample
    name character by character, which more than doubles the render time of a large page.
    Escaping only changes names outside the legacy charset, and every name here is inside it
    (the spec loader accepts no other), so ``allow-utf-8`` renders the very same bytes; the
    tests pin that equality.
    """
    if wants_protobuf(accept):
        return _PROTOBUF, PROTOBUF
    try:
        encoder, content_type = choose_encoder(accept)
    except Exception:
        # client_python compares the version parameter as a version and raises on one that is
        # not (``version=abc``): such a client gets the text format, as for no Accept at all.
        encoder, content_type = choose_encoder("")
    if not content_type.startswith("application/openmetrics-text"):
        # The text format has no exemplars: do not collect them only to be dropped. Our own
        # writer for the escapings that leave a legacy name as it is (as for OpenMetrics).
        escaping = "underscores"
        if isinstance(encoder, functools.partial):
            escaping = str(encoder.keywords.get("escaping", escaping))
        if escaping in ("underscores", "allow-utf-8"):
            encoder = _text_encoder(escaping)
        return _without_exemplars(encoder), content_type
    if isinstance(encoder, functools.partial) and encoder.keywords.get("escaping") in (
        "underscores",
        "allow-utf-8",
    ):
        # Our own encoder writes client_python's bytes, exemplars composed once (encoder.py).
        return _openmetrics_encoder(str(encoder.keywords.get("version", "1.0.0"))), content_type
    return encoder, content_type


# One encoder per version a client asked for, kept so the names it checked are not checked
# again; the version comes from a client's header, so only a few are kept.
_OPENMETRICS: dict[str, OpenMetricsEncoder] = {}
_OPENMETRICS_KEPT = 4


def _openmetrics_encoder(version: str) -> OpenMetricsEncoder:
    encoder = _OPENMETRICS.get(version)
    if encoder is None:
        encoder = OpenMetricsEncoder(version)
        if len(_OPENMETRICS) < _OPENMETRICS_KEPT:
            _OPENMETRICS[version] = encoder
    return encoder


_TEXT: dict[str, TextEncoder] = {}


def _text_encoder(escaping: str) -> TextEncoder:
    encoder = _TEXT.get(escaping)
    if encoder is None:
        encoder = TextEncoder(escaping)
        if len(_TEXT) < _OPENMETRICS_KEPT:
            _TEXT[escaping] = encoder
    return encoder


def _collect(registry: CollectorRegistry, *, exemplars: bool) -> Iterator[Metric]:
    """The registry's families, without exemplars when ``exemplars`` is False and the registry
    can leave them out (a ``Registry``; any other collects them for the encoder to drop)."""
    if isinstance(registry, Registry):
        return iter(registry.collect(exemplars=exemplars))
    return iter(registry.collect())


class _Collected:
    """Families already being collected, handed to an encoder that asks for ``collect()`` once."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def _without_exemplars(encoder: Encoder) -> Encoder:
    def encode(registry: CollectorRegistry) -> bytes:
        # client_python's encoders read nothing of a registry but collect().
        return encoder(_Collected(_collect(registry, exemplars=False)))  # type: ignore[arg-type]

    return encode
