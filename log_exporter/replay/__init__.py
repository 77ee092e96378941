"""``log-exporter replay`` and ``trace``: old log files through the pipeline, and their events.

``command`` is the replay command (options, checks, output file, summary; ``run_shipping`` for
``--cloudwatch``); ``engine`` replays the files as final values or in steps; ``serial`` is the one
loop reading a file (or a stretch of one) through a feed; ``steps`` the one step clock;
``parallel`` cuts the files into stretches for worker processes and merges their answers in log
order; ``partial`` is a worker's partial state, ``merge`` its exact merge into a store,
``target`` the spec's program writing it; ``progress`` the progress bar; ``trace`` the trace
command.
"""
