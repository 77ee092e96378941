"""log-exporter: derive Prometheus and CloudWatch metrics from a JSONL event log."""

__version__ = "0.1.0"
