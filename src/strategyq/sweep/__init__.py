"""Parameter sweeps and walk-forward analysis.

- :mod:`~strategyq.sweep.grid`: the parameter grid, its constraint and size cap;
- :mod:`~strategyq.sweep.constraint`: the safe constraint parser (no eval);
- :mod:`~strategyq.sweep.folds`: walk-forward training and test windows;
- :mod:`~strategyq.sweep.rank`: the ranking, its tie rule, the heatmap;
- :mod:`~strategyq.sweep.assemble`: the fan-in (pure: JSON in, the result out).

The executor's side (plan a sweep, run one chunk) is
:mod:`strategyq.executor.run.sweep`; the queue's side is :mod:`strategyq.queue.sweeps`.
"""
