"""Task execution inside the executor process: data, sandbox, engine, result payload.

- :mod:`~strategyq.executor.run.dispatch`: :func:`run_task` and the table of
  runners by task type;
- :mod:`~strategyq.executor.run.context`: what every run shares (its
  :class:`RunContext`, the engine's view of the loaded data, data notes);
- :mod:`~strategyq.executor.run.backtest`, :mod:`~strategyq.executor.run.screening`,
  :mod:`~strategyq.executor.run.sweep`: one module per task type (a sweep's
  plan and its chunks);
- :mod:`~strategyq.executor.run.payload`: fitting a payload under the result cap.

No Redis here: a sweep's chunk tasks are built with
:mod:`strategyq.protocol.chunks`, and the worker queues them.
"""
