"""The executor: a warm process with no secrets that runs tasks for one worker slot.

- :mod:`~strategyq.executor.interface`: the :class:`Executor` protocol the worker
  talks to;
- :mod:`~strategyq.executor.client`: the worker's side of an executor process — a
  process handle, a pipe and a cancel pipe; it imports neither the sandbox nor
  the engine;
- :mod:`~strategyq.executor.main`: the process (``python -m strategyq.executor``):
  parses and validates each task once, runs it, caches market data, and starts
  its sandbox host;
- :mod:`~strategyq.executor.run`: task execution (a runner per task type);
- :mod:`~strategyq.executor.sandbox_host`: the sandbox host process, which holds
  only market data and warm pandas and forks one sandbox child per task;
- :mod:`~strategyq.executor.inprocess`: an executor inside the worker's own
  process, for tests of the worker's logic;
- :mod:`~strategyq.executor.frames`: the length-prefixed frames they speak.
"""
