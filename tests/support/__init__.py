"""The tests' shared helpers, one module per subject, imported as ``tests.support.<module>``.

Common to every area (the root conftest also offers them as fixtures):

- ``waits``: ``wait_for``, the one way to wait on a condition, and the ``DEADLINE`` of a wait;
- ``ports``: ``free_port``;
- ``processes``: find a real program or skip, start it with its output in a file, stop it;
- ``contract``: ``contract_event`` / ``contract_line``, events of the contract to write;
- ``prometheus``: a real Prometheus server.

One area each: ``serve`` (the exporter as a process or in-process, and ``exporter_argv``, its
one command line), ``pipeline`` (the data path in one process: ``store_for``, ``feed``,
``render``, ``FixedFamilies`` for comparing encoders), ``tail`` (the tailing tests' reader and log
writers), ``replay_model`` (generated
logs and an independent model of their metrics), ``spec_model`` (a plain interpreter of the
spec, the reference both compiled targets must match), ``certs`` (TLS certificates), ``app``
(the SustainBot tests), ``service`` (the one runner of a real ``sustainbot serve``, for the app's
process tests and the end-to-end stack), ``slowclient`` (bounded slow and hostile clients on
loopback), ``cloudwatch`` and ``faultproxy`` (the CloudWatch emulator and a faulty network
before it), ``deploy`` and ``event_history`` (the deployment tests).
"""
