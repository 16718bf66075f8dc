#!/usr/bin/env node
// A Node backend's side of strategyq: push a backtest and a screen onto
// strategy_queue exactly as JSON.stringify writes them, wait for each result
// without polling, and print the results.
//
// Waiting: a worker that writes a terminal result (completed, error,
// cancelled) also pushes one token onto the list strategyq:done:{task_id}
// (kept 300 s). Read task_result:{task_id} once; if it is not terminal yet,
// BLPOP that list (it returns the moment the result is written), put the
// token back for any other waiter, and read the result.
//
//   npm ci
//   REDIS_URL=redis://:password@cache:6379/0 node producer.js \
//       --backtest gap_up.py --screen momentum_screen.py
'use strict';

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { createClient } = require('redis');

const QUEUE = 'strategy_queue';
const RESULT_PREFIX = 'task_result:';
const DONE_PREFIX = 'strategyq:done:';
const TERMINAL = new Set(['completed', 'error', 'cancelled']);

function options() {
  const { values } = parseArgs({
    options: {
      backtest: { type: 'string' },
      screen: { type: 'string' },
      symbols: { type: 'string', default: 'AAPL,MSFT,GOOG' },
      universe: { type: 'string', default: 'AAPL,MSFT,GOOG,IBM,FB' },
      start: { type: 'string', default: '2010-01-01' },
      end: { type: 'string', default: '2012-12-31' },
      limit: { type: 'string', default: '5' },
      'id-prefix': { type: 'string', default: `node-${Date.now()}` },
      timeout: { type: 'string', default: '120' },
      tenant: { type: 'string' },
      priority: { type: 'string' },
    },
  });
  if (!values.backtest || !values.screen) {
    throw new Error('name both strategies: --backtest FILE --screen FILE');
  }
  return values;
}

function redisUrl() {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  const host = process.env.REDIS_HOST || '127.0.0.1';
  const port = process.env.REDIS_PORT || '6379';
  const password = process.env.REDIS_PASSWORD;
  const auth = password ? `:${encodeURIComponent(password)}@` : '';
  return `redis://${auth}${host}:${port}`;
}

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

async function getResult(client, taskId) {
  const raw = await client.get(RESULT_PREFIX + taskId);
  return raw === null ? null : JSON.parse(raw);
}

// The task's terminal result; blocks on its done list between reads, no polling.
async function waitForResult(client, taskId, timeoutS) {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const result = await getResult(client, taskId);
    if (result && TERMINAL.has(result.status)) return result;
    const remaining = (deadline - Date.now()) / 1000;
    if (remaining <= 0) throw new Error(`task ${taskId}: no result within ${timeoutS} s`);
    const popped = await client.blPop(DONE_PREFIX + taskId, Math.max(1, Math.ceil(remaining)));
    if (popped) {
      // Put the token back for any other waiter on the same task.
      await client.rPush(DONE_PREFIX + taskId, popped.element);
    }
  }
}

function describe(taskId, result) {
  const data = result.data || {};
  if (result.status !== 'completed') {
    return [`${taskId} ${result.status}: ${data.error} (${data.error_type})`, false];
  }
  if (data.execution_mode === 'backtest') {
    const m = data.performance_metrics || {};
    return [
      `${taskId} completed: backtest, ${data.instances.length} signals, ` +
        `total_return ${m.total_return}, win_rate ${m.win_rate}`,
      true,
    ];
  }
  const tickers = (data.ranked_results || []).map((r) => r.ticker);
  return [
    `${taskId} completed: screening, ${tickers.length} results: ${tickers.join(',')}`,
    true,
  ];
}

async function main() {
  const opts = options();
  const client = createClient({ url: redisUrl() });
  client.on('error', (err) => console.error('redis:', err.message));
  await client.connect();
  try {
    const backtestId = `${opts['id-prefix']}-backtest`;
    const screenId = `${opts['id-prefix']}-screen`;
    const tasks = [
      {
        task_id: backtestId,
        task_type: 'backtest',
        args: {
          strategy_code: fs.readFileSync(opts.backtest, 'utf8'),
          symbols: list(opts.symbols),
          start_date: new Date(`${opts.start}T00:00:00Z`).toISOString(),
          end_date: new Date(`${opts.end}T23:59:59Z`).toISOString(),
        },
      },
      {
        task_id: screenId,
        task_type: 'screening',
        args: {
          strategy_code: fs.readFileSync(opts.screen, 'utf8'),
          universe: list(opts.universe),
          limit: Number(opts.limit),
        },
      },
    ];
    for (const task of tasks) {
      // Optional top-level fields: without them a task is tenant "default" in its type's lane.
      if (opts.tenant) task.tenant = opts.tenant;
      if (opts.priority) task.priority = opts.priority;
      await client.lPush(QUEUE, JSON.stringify(task));
      console.log(`queued ${task.task_type} ${task.task_id}`);
    }
    let ok = true;
    for (const taskId of [backtestId, screenId]) {
      const [line, completed] = describe(taskId, await waitForResult(client, taskId, Number(opts.timeout)));
      console.log(line);
      ok = ok && completed;
    }
    process.exitCode = ok ? 0 : 1;
  } finally {
    await client.quit();
  }
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 2;
});
