"""Optional shipping of the event log to CloudWatch Logs and of derived metrics to CloudWatch.

Nothing here imports boto3 at import time: the exporter must work without the ``cloudwatch``
extra, and boto3 is loaded only by :mod:`log_exporter.cloudwatch.client` once shipping is enabled.
"""
