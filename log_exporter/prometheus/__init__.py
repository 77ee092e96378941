"""The Prometheus side: the exporter's state turned into exposition bytes at scrape time.

Everything the exporter knows of the exposition formats lives here, as client_python keeps it in
its ``exposition``. The store and serve's own numbers become metric families at each scrape
(``collector``, with every self-metric declared once in ``selfmetrics`` and the store's
OpenMetrics families in ``families``); a request's ``Accept`` and ``Accept-Encoding`` headers
choose the encoding and whether exemplars are collected at all (``negotiate``); the OpenMetrics
encoder writes client_python's bytes at a fraction of its cost (``encoder``, sharing the text of
label values and numbers with ``families`` through ``text``). The HTTP side is a non-blocking
connection loop (``connections``) under the routes (``server``), guarded by the exporter-toolkit
web config (``webconfig``). ``backfill`` writes the same families, timestamped, for replay.

Nothing here reads the log or changes the state: a scrape copies the store under its lock and
renders outside it.
"""
