"""The only module that talks to AWS: boto3 clients, and retries that never give up on outages.

boto3 is imported inside :func:`connect`, so the exporter runs without the ``cloudwatch`` extra.
Throttling, 5xx, connection errors and credential/permission errors are retried with full-jitter
exponential backoff for as long as it takes: the JSONL file is the buffer, so waiting loses
nothing. Only a request CloudWatch calls invalid is given up (counted by the caller).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from log_exporter.cloudwatch.config import INSTALL_HINT, CloudWatchConfig, ConfigError
from log_exporter.cloudwatch.logs_batch import LogEvent
from log_exporter.cloudwatch.metrics_agg import Datum
from log_exporter.cloudwatch.stats import ShipperStats

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_logs import CloudWatchLogsClient

log = logging.getLogger(__name__)

T = TypeVar("T")

# Fixable by an operator (IAM, rotated keys) without restarting: keep the data waiting.
_PERMISSION_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
_RETRY_CODES: Final = _PERMISSION_CODES | frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceFault",
        "RequestTimeout",
        "RequestTimeoutException",
        "OperationAbortedException",
    }
)
# The errors an operator fixes (credentials, IAM): serve waits for the fix, replay stops on them.
_AUTH_CODES: Final = _PERMISSION_CODES | frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
)


class MissingExtraError(ConfigError):
    """CloudWatch shipping was enabled but boto3 is not installed."""


class CredentialsRefused(ConfigError):
    """A credentials or permission error in a one-shot run (replay): no operator will fix it
    while the command waits, so it ends the run instead of being retried."""


class Stopped(Exception):
    """The shipper was asked to stop while waiting to retry."""


class RequestRejected(Exception):
    """CloudWatch refused a request as invalid; retrying it would fail the same way."""

    def __init__(self, api: str, code: str, message: str) -> None:
        super().__init__(f"{api}: {code}: {message}")
        self.api = api
        self.code = code


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff: sleep uniform(0, min(cap, base * 2**attempt))."""

    base: float = 0.2
    cap: float = 20.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.base * (2 ** min(attempt, 30))))


def connect(
    config: CloudWatchConfig,
) -> tuple[CloudWatchLogsClient, CloudWatchClient]:
    """boto3 clients for Logs and Metrics; credentials and endpoint from boto3's standard chain.

    Raises MissingExtraError with the install command when boto3 is absent.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise MissingExtraError(f"CLOUDWATCH_ENABLED=true needs boto3: {INSTALL_HINT}") from exc
    # One attempt per call: retrying is ours, so an outage can last as long as it lasts and
    # every attempt is counted. AWS_ENDPOINT_URL and AWS_DISABLE_REQUEST_COMPRESSION are read by
    # botocore itself.
    botocore_config = Config(
        region_name=config.region,
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    session = boto3.session.Session()
    logs = session.client("logs", config=botocore_config)
    metrics = session.client("cloudwatch", config=botocore_config)
    return logs, metrics


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(retry?, result label) for an exception raised by a botocore call."""
    from botocore import exceptions as bex
    from botocore.parsers import ResponseParserError

    transient = (
        bex.HTTPClientError,  # resets, read timeouts, broken streams
        bex.ConnectionError,  # refused, DNS, connect timeouts, proxy and TLS failures
        bex.IncompleteReadError,
        bex.NoCredentialsError,  # instance/container credentials not reachable yet
        bex.PartialCredentialsError,
        bex.CredentialRetrievalError,
        ResponseParserError,  # a garbled answer from a proxy or load balancer
    )
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        retry = code in _RETRY_CODES or status >= 500 or status == 429
        return retry, code
    if isinstance(exc, transient):
        return True, type(exc).__name__
    # Anything else (a malformed request, a botocore misuse) would fail the same way forever.
    return False, type(exc).__name__


class CloudWatchApi:
    """PutLogEvents / PutMetricData with creation of missing groups and streams, and retries."""

    def __init__(
        self,
        logs: CloudWatchLogsClient,
        metrics: CloudWatchClient,
        config: CloudWatchConfig,
        stats: ShipperStats,
        stop: threading.Event,
        *,
        backoff: Backoff = Backoff(),
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        wait_for_credentials: bool = True,
    ) -> None:
        self._wait_for_credentials = wait_for_credentials
        self._logs = logs
        self._metrics = metrics
        self._config = config
        self._stats = stats
        self._stop = stop
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._ready_streams: set[str] = set()
        self._clock = clock or time.time

    def _call(
        self, api: str, fn: Callable[[], T], on_missing: Callable[[], None] | None = None
    ) -> T:
        attempt = 0
        while True:
            if self._stop.is_set():
                raise Stopped(api)
            try:
                result = fn()
            except Exception as exc:
                retry, label = _classify(exc)
                self._stats.request(api, label)
                if label == "ResourceNotFoundException" and on_missing is not None:
                    # The group or stream was deleted under us: recreate and try again, backing
                    # off if it keeps disappearing so the loop never spins.
                    if attempt and self._stop.wait(self._backoff.delay(attempt, self._rng)):
                        raise Stopped(api) from exc
                    attempt += 1
                    self._stats.retry()
                    on_missing()
                    continue
                if not retry:
                    from botocore.exceptions import BotoCoreError, ClientError

                    if isinstance(exc, ClientError):
                        message = str(exc.response.get("Error", {}).get("Message", exc))
                        raise RequestRejected(api, label, message) from exc
                    if isinstance(exc, BotoCoreError):
                        # Refused before sending (e.g. parameter validation): same outcome.
                        raise RequestRejected(api, label, str(exc)) from exc
                    raise
                if label in _AUTH_CODES and not self._wait_for_credentials:
                    raise CredentialsRefused(
                        f"CloudWatch {api} failed: {label}: {exc}. Fix the credentials or the IAM"
                        " policy (docs/cloudwatch.md) and replay again; what was shipped before"
                        " this is shipped again"
                    ) from exc
                delay = self._backoff.delay(attempt, self._rng)
                attempt += 1
                self._stats.retry()
                # What an operator must fix (credentials, IAM) is an error, whatever its class:
                # only throttling, outages and network faults mend themselves.
                auth = label in _AUTH_CODES or "Access" in label or "Token" in label
                level = logging.ERROR if auth else logging.WARNING
                # The details are in the message too, not only in ``extra``: replay prints
                # bare messages on stderr, where a retry that names no error cannot be acted on.
                log.log(
                    level,
                    "cloudwatch %s failed (%s), retry %d in %.1f s",
                    api,
                    label,
                    attempt,
                    delay,
                    extra={
                        "api": api,
                        "error": label,
                        "attempt": attempt,
                        "delay_s": round(delay, 3),
                    },
                )
                if self._stop.wait(delay):
                    raise Stopped(api) from exc
            else:
                self._stats.request(api, "success")
                return result

    def ensure_stream(self, stream: str) -> None:
        """Create the log group and ``stream`` unless they exist (idempotent, retried)."""
        group = self._config.log_group

        def create_group() -> None:
            with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                self._logs.create_log_group(logGroupName=group)

        def create_stream() -> None:
            with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                self._logs.create_log_stream(logGroupName=group, logStreamName=stream)

        def stream_exists() -> bool:
            found = self._logs.describe_log_streams(
                logGroupName=group, logStreamNamePrefix=stream, limit=50
            )
            return any(s.get("logStreamName") == stream for s in found.get("logStreams", []))

        group_missing = False
        try:
            exists = self._call("DescribeLogStreams", stream_exists)
        except RequestRejected as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            exists, group_missing = False, True
        if group_missing:
            # Only when missing: a least-privilege policy for a pre-created group may well
            # not allow logs:CreateLogGroup.
            self._call("CreateLogGroup", create_group)
        if not exists:
            self._call("CreateLogStream", create_stream, on_missing=create_group)
        self._ready_streams.add(stream)

    def put_log_events(self, stream: str, events: Sequence[LogEvent]) -> Mapping[str, int]:
        """Send one batch (already sorted and within limits); the ``rejectedLogEventsInfo``."""
        if stream not in self._ready_streams:
            self.ensure_stream(stream)
        payload: list[Any] = [{"timestamp": e.timestamp, "message": e.message} for e in events]

        def put() -> Any:
            return self._logs.put_log_events(
                logGroupName=self._config.log_group, logStreamName=stream, logEvents=payload
            )

        def recreate() -> None:
            self._ready_streams.discard(stream)
            self.ensure_stream(stream)

        response = self._call("PutLogEvents", put, on_missing=recreate)
        self._stats.shipped(len(events), sum(1 for e in events if e.truncated), self._clock())
        info = response.get("rejectedLogEventsInfo") or {}
        return {k: int(v) for k, v in info.items() if isinstance(v, int)}

    def put_metric_data(self, datums: Sequence[Datum]) -> None:
        """Send one request's datums (already chunked to the API limits)."""
        payload: list[Any] = [d.to_api() for d in datums]

        def put() -> Any:
            return self._metrics.put_metric_data(
                Namespace=self._config.namespace, MetricData=payload
            )

        self._call("PutMetricData", put)
        self._stats.sent_datums(len(datums), self._clock())
