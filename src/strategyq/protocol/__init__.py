"""The wire format between producers, the queue, the worker and the executor.

- :mod:`~strategyq.protocol.envelope`: a message's ``task_id`` and ``task_type``
  (what the worker reads), :class:`TaskType`, :class:`MalformedTask`;
- :mod:`~strategyq.protocol.task`: the typed :class:`Task` and its args, parsed
  once at the edge;
- :mod:`~strategyq.protocol.args`: the one table of task args (the CLI's
  options are built from it);
- :mod:`~strategyq.protocol.results`: result records (:class:`Status`, the
  envelope stored at ``task_result:{id}``);
- :mod:`~strategyq.protocol.chunks`: a sweep's chunk tasks, their ids, and the
  fan-out plan the executor hands the worker.
"""
