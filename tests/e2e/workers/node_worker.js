// Node.js worker for tests/e2e/test_runtimes.py.
//
// Builds some state (a Map, a typed array, a closure counter), keeps a
// setInterval ticking, prints "READY" once a promise chain of timers has
// run, then answers each stdin line (read with readline) after an awaited
// timer:
//
//     <counter> <state digest> <sum> ticking=<yes|no>
//
// ticking=yes says the interval timer fired while the request waited.
// Answers depend on every earlier request, so after a restore they must
// continue exactly where the original left off. "ping" answers
// "pong <counter> <entries>" at once without touching the state (for
// bench/engine_bench.py). "quit" prints "bye" and exits 0; so does EOF,
// silently.
'use strict';
const crypto = require('crypto');
const readline = require('readline');
const { setTimeout: sleep } = require('timers/promises');

const table = new Map();
const arr = new Float64Array(4096);
for (let i = 0; i < arr.length; i++) arr[i] = Math.sin(i) * 1000;
for (let i = 0; i < 2000; i++) table.set(`k${i}`, { i, sq: i * i, s: String(i * 7) });
let digest = crypto.createHash('sha256').update('node-worker').digest('hex');
let counter = 0;
let ticks = 0;
const interval = setInterval(() => { ticks++; }, 5);

function step(cmd) {
  counter++;
  const k = `k${(counter * 37) % 2000}`;
  const e = table.get(k);
  e.sq += counter;
  arr[counter % arr.length] += e.sq;
  let sum = 0;
  for (let i = 0; i < arr.length; i++) sum += arr[i];
  digest = crypto.createHash('sha256').update(`${digest}:${cmd}:${k}:${e.sq}`).digest('hex');
  return `${counter} ${digest.slice(0, 16)} ${sum.toFixed(3)}`;
}

async function main() {
  // a chain of timers and promises before READY
  const parts = await Promise.all([1, 2, 3].map(async (n) => { await sleep(n); return n * 10; }));
  for (const p of parts) table.set(`p${p}`, { i: p, sq: p, s: 'p' });
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  // requests are answered one at a time, in order
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    queue = queue.then(async () => {
      const cmd = line.trim();
      if (cmd === 'quit') {
        process.stdout.write('bye\n', () => process.exit(0));
        return;
      }
      if (cmd === 'ping') {  // answered at once, state untouched (bench/engine_bench.py)
        process.stdout.write(`pong ${counter} ${table.size}\n`);
        return;
      }
      const before = ticks;
      await sleep(40);
      const ticking = ticks > before ? 'yes' : 'no';
      process.stdout.write(`${step(cmd)} ticking=${ticking}\n`);
    });
  });
  // EOF: answer what is queued, then exit (the interval keeps the loop alive)
  rl.on('close', () => { queue = queue.then(() => process.exit(0)); });
  process.stdout.write('READY\n');
}

main();
