"""serve's OpenMetrics encoder: client_python's ``openmetrics.exposition.generate_latest`` under
``escaping=allow-utf-8``, byte for byte, at a fraction of its cost.

A family that writes its own lines (``openmetrics_lines()``: the store's, ``families``) is asked
for them; the rest (serve's self-metrics, client_python's standard collectors) are written here
sample by sample. Anything our collectors never produce (native histograms, names outside the
legacy charset) is handed to client_python's own code, so the output stays its output; tests pin
the equality over generated registries, the golden page and a real sidecar's page.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import exposition as text_reference
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as reference
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.validation import _is_valid_legacy_labelname, _is_valid_legacy_metric_name

from log_exporter.prometheus.text import escape, go_number

__all__ = ["OpenMetricsEncoder", "TextEncoder"]

_NAMES_KEPT = 10_000


def _exemplar_allowed(metric: Metric, sample: Sample) -> bool:
    name = sample.name
    kind = metric.type
    if kind == "counter":
        return name.endswith("_total")
    if kind == "gaugehistogram":
        return name.endswith("_bucket")
    if kind == "histogram":
        return name.endswith("_bucket") or name == metric.name
    return False


class _Metrics:
    """A registry of already collected families, for handing one to client_python's encoder."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


class OpenMetricsEncoder:
    """Renders a registry as OpenMetrics text (of ``version``: it only decides whether native
    histograms, which client_python writes for us, appear); one instance serves every scrape.

    Two renders at once may both compose an exemplar's text; they compose the same string.
    """

    def __init__(self, version: str = "1.0.0") -> None:
        self._version = version
        # Names seen in the legacy charset (metric and sample names; label names with their
        # ``name="`` prefix): a render checks each once. Bounded, though the names of a page
        # are few: they come from the spec and the collectors, not from clients.
        self._legacy: set[str] = set()
        self._label_names: dict[str, str] = {}

    def __call__(self, registry: Collector) -> bytes:
        out: list[str] = []
        for metric in registry.collect():
            own = getattr(metric, "openmetrics_lines", None)
            if own is not None:
                # The store's families write their own lines (families.StoreFamily).
                out += own()
                continue
            try:
                lines = self._family(metric)
            except Exception as exception:
                exception.args = (exception.args or ("",)) + (metric,)
                raise
            if lines is None:
                # Something only client_python's own code writes the way it does.
                page = reference.generate_latest(  # type: ignore[no-untyped-call]
                    _Metrics([metric]), escaping=reference.ALLOWUTF8, version=self._version
                )
                out.append(page.decode("utf-8").removesuffix("# EOF\n"))
            else:
                out += lines
        out.append("# EOF\n")
        return "".join(out).encode("utf-8")

    # One branch per metric type and sample suffix, mirroring client_python's writer
    # line for line, which is what keeps the two byte-identical.
    def _family(self, metric: Metric) -> list[str] | None:  # noqa: C901
        """The family's lines, or None when a name is outside the legacy charset or a sample is
        a native histogram (then client_python writes it)."""
        name = metric.name
        if not self._legacy_name(name):
            return None
        out = [f"# HELP {name} {escape(metric.documentation)}\n", f"# TYPE {name} {metric.type}\n"]
        if metric.unit:
            out.append(f"# UNIT {name} {metric.unit}\n")
        add = out.append
        names, legacy, go = self._label_names, self._legacy, go_number
        allowed = ""
        for s in metric.samples:
            if s.native_histogram is not None:
                return None
            if s.name not in legacy and not self._legacy_name(s.name):
                return None
            labels = s.labels
            try:
                if not labels:
                    head = s.name
                elif len(labels) == 1:
                    ((k, v),) = labels.items()
                    head = f'{s.name}{{{names[k]}{escape(v)}"}}'
                else:
                    inner = '",'.join([names[k] + escape(v) for k, v in sorted(labels.items())])
                    head = f'{s.name}{{{inner}"}}'
            except KeyError:
                if not all(self._label_name(k) for k in labels):
                    return None
                return self._family(metric)
            value = "" if s.value is None else go(s.value)
            stamp = "" if s.timestamp is None else f" {s.timestamp}"
            exemplar = s.exemplar
            if exemplar:
                if s.name is not allowed and s.name != allowed:
                    if not _exemplar_allowed(metric, s):
                        raise ValueError(
                            f"Metric {name} has exemplars, but is not a histogram bucket or counter"
                        )
                    # A family's exemplars sit on one sample name (all of a counter's on
                    # _total, of a histogram's on _bucket): check each name once.
                    allowed = s.name
                add(f"{head} {value}{stamp}{_compose(exemplar)}\n")
            else:
                add(f"{head} {value}{stamp}\n")
        return out

    def _legacy_name(self, name: str) -> bool:
        if name in self._legacy:
            return True
        if not _is_valid_legacy_metric_name(name):
            return False
        if len(self._legacy) < _NAMES_KEPT:
            self._legacy.add(name)
        return True

    def _label_name(self, name: str) -> bool:
        """True, and the name's ``name="`` remembered, when it is in the legacy charset."""
        if not _is_valid_legacy_labelname(name):
            return False
        if len(self._label_names) >= _NAMES_KEPT:
            self._label_names.clear()
        self._label_names[name] = f'{name}="'
        return True


def _compose(exemplar: Exemplar) -> str:
    """An exemplar's `` # {labels} value [timestamp]`` as client_python composes it."""
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(exemplar.labels.items()))
    text = f" # {{{inner}}} {go_number(exemplar.value)}"
    if exemplar.timestamp is not None:
        text += f" {exemplar.timestamp}"
    return text


class TextEncoder:
    """Renders a registry as the text format (0.0.4), client_python's ``generate_latest`` byte
    for byte: the store's families write their own lines (``text_lines()``, from the snapshot,
    series texts kept), every other family (a few dozen self-metrics and standard collectors)
    is written by client_python itself, under the ``escaping`` the client asked for."""

    def __init__(self, escaping: str = "underscores") -> None:
        self._escaping = escaping

    def __call__(self, registry: Collector) -> bytes:
        out: list[str] = []
        for metric in registry.collect():
            own = getattr(metric, "text_lines", None)
            if own is not None:
                out += own()
                continue
            page = text_reference.generate_latest(_Metrics([metric]), escaping=self._escaping)
            out.append(page.decode("utf-8"))
        return "".join(out).encode("utf-8")
