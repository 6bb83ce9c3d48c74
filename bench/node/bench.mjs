// Node peer of bench/uvctx_bench: the same workloads with AbortController,
// AbortSignal.any (a child of a parent: a signal that aborts when the parent
// or its own controller does) and timers, the same harness policy
// (bench/harness.h) and the same output (`name<TAB>value<TAB>unit`).
//
//   node --expose-gc bench/node/bench.mjs [--smoke] [--only NAME]
//                                         [--time MS] [--reps N]
//
// Node's shapes:
//   cancel context   { controller, signal: AbortSignal.any([parent, own]) }
//                    (a bare AbortController under Background)
//   deadline context the same plus setTimeout(() => controller.abort(), ms);
//                    cancel = abort + clearTimeout. The idle deadline
//                    contexts of with_timeout/idle=N are AbortSignal.timeout.
//   release          dropping the references (the garbage collector).
// No values (deep_value, and the value lookup of common_parent_cancel, are
// left out). cancel_delivery/from=loop is abort() to the 'abort' listener,
// which Node runs synchronously inside abort(); there is no from=thread.
// Memory results are V8 heap bytes per context (heapUsed after gc()).

const args = process.argv.slice(2);
const opt = { smoke: false, only: null, time: 50, reps: 5, list: false, samples: 2000 };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--smoke') Object.assign(opt, { smoke: true, time: 2, reps: 1, samples: 100 });
  else if (a === '--only') opt.only = args[++i];
  else if (a === '--time') opt.time = Number(args[++i]);
  else if (a === '--reps') opt.reps = Number(args[++i]);
  else if (a === '--list') opt.list = true;
  else {
    console.error('usage: node --expose-gc bench.mjs [--smoke] [--only NAME] [--time MS] [--reps N]');
    process.exit(2);
  }
}

const gc = globalThis.gc ?? (() => {});
const now = () => process.hrtime.bigint();
let sink = 0;

const hasPrefix = (s, p) =>
  s.startsWith(p) && (s.length === p.length || s[p.length] === '/' || p.endsWith('/'));
const wanted = (name) => opt.only === null || hasPrefix(name, opt.only);
const groupWanted = (g) =>
  opt.list || opt.only === null || hasPrefix(g, opt.only) || opt.only.startsWith(g);

function emit(name, v, unit) {
  if (opt.list) console.log(`${name}\t-\t${unit}`);
  else if (Number.isInteger(v) && v > 1e5) console.log(`${name}\t${v.toFixed(0)}\t${unit}`);
  else console.log(`${name}\t${v.toFixed(2)}\t${unit}`);
}

function median(v) {
  v.sort((a, b) => a - b);
  const n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Untimed, between timed runs (like the C suite's settle): lets the event loop
// run what the last run left, FinalizationRegistry cleanups of
// AbortSignal.any included, as a server that returns to its loop would.
const tick = () => new Promise((resolve) => setImmediate(resolve));
async function settle() {
  for (let i = 0; i < 3; i++) await tick();
}

function runNS(fn, n) {
  const t0 = now();
  fn(n);
  return Number(now() - t0);
}

// The policy of bench/harness.h.
async function measure(name, fn) {
  if (!wanted(name)) return;
  if (opt.list) return emit(name, 0, 'ns/op');
  const target = opt.time * 1e6;
  await settle();
  gc();
  let n = 1;
  let t;
  for (;;) {
    t = runNS(fn, n);
    await settle();
    if (t >= target / 4 || n >= 2 ** 40) break;
    n *= t < target / 400 ? 16 : 2;
  }
  n = Math.max(1, Math.floor((n * target) / Math.max(t, 1)));
  const ns = [];
  for (let r = 0; r < opt.reps; r++) {
    ns.push(runNS(fn, n) / n);
    await settle();
  }
  emit(name, median(ns), 'ns/op');
}

const peakRSS = () => process.resourceUsage().maxRSS * 1024;

// A cancellable child of parentSignal (null: Background).
function withCancel(parentSignal) {
  const controller = new AbortController();
  const signal = parentSignal ? AbortSignal.any([parentSignal, controller.signal]) : controller.signal;
  return { controller, signal };
}

function withTimeout(parentSignal, ms) {
  const c = withCancel(parentSignal);
  c.timer = setTimeout(() => c.controller.abort(new DOMException('timeout', 'TimeoutError')), ms);
  c.timer.unref();
  return c;
}

function cancelTimeout(c) {
  clearTimeout(c.timer);
  c.controller.abort();
}

const HOUR = 3600 * 1000;

async function benchMillion() {
  if (!groupWanted('million/')) return;
  if (opt.list) {
    for (const [n, u] of [['million/create', 'ns/op'], ['million/cancel_root', 'ns'], ['million/release', 'ns/op'], ['million/peak_rss', 'MiB'], ['million/rss_per_ctx', 'B']]) emit(n, 0, u);
    return;
  }
  const N = 1000000;
  // One repetition: AbortSignal.any costs ~20 us here, a million of them ~30 s.
  const reps = 1;
  const create = [], cancel = [], release = [];
  let rss0 = 0, rss1 = 0;
  let held = new Array(N).fill(null);
  for (let r = 0; r < reps; r++) {
    const root = new AbortController();
    gc();
    if (r === 0) rss0 = peakRSS();
    let t0 = now();
    for (let i = 0; i < N; i++) held[i] = withCancel(root.signal);
    create.push(Number(now() - t0) / N);
    if (r === 0) rss1 = peakRSS();
    t0 = now();
    root.abort();
    cancel.push(Number(now() - t0));
    t0 = now();
    held.fill(null);
    gc();
    release.push(Number(now() - t0) / N);
    await settle();
  }
  held = null;
  if (wanted('million/create')) emit('million/create', median(create), 'ns/op');
  if (wanted('million/cancel_root')) emit('million/cancel_root', median(cancel), 'ns');
  if (wanted('million/release')) emit('million/release', median(release), 'ns/op');
  if (wanted('million/peak_rss')) emit('million/peak_rss', rss1 / (1024 * 1024), 'MiB');
  if (wanted('million/rss_per_ctx')) emit('million/rss_per_ctx', (rss1 - rss0) / N, 'B');
}

async function benchMem() {
  if (!groupWanted('mem/')) return;
  if (opt.list) {
    emit('mem/cancel_ctx_heap', 0, 'B');
    emit('mem/deadline_ctx_heap', 0, 'B');
    return;
  }
  const N = 20000;
  for (const kind of ['cancel', 'deadline']) {
    const name = `mem/${kind}_ctx_heap`;
    const root = new AbortController();
    const held = new Array(N).fill(null);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < N; i++) held[i] = kind === 'cancel' ? withCancel(root.signal) : withTimeout(root.signal, HOUR);
    gc();
    const after = process.memoryUsage().heapUsed;
    if (wanted(name)) emit(name, (after - before) / N, 'B');
    for (const c of held) if (c.timer) clearTimeout(c.timer);
    root.abort();
    await settle();
  }
}

async function benchCreateCancelRelease() {
  if (!groupWanted('with_cancel_cancel_release') && !groupWanted('with_timeout_cancel_release')) return;
  const parent = new AbortController();
  await measure('with_cancel_cancel_release', (n) => {
    for (let i = 0; i < n; i++) withCancel(parent.signal).controller.abort();
  });
  await measure('with_timeout_cancel_release', (n) => {
    for (let i = 0; i < n; i++) cancelTimeout(withTimeout(parent.signal, HOUR));
  });
}

async function benchCommonParent() {
  if (!groupWanted('common_parent_cancel')) return;
  const shared = new AbortController();
  await measure('common_parent_cancel', (n) => {
    let x = 0;
    for (let i = 0; i < n; i++) {
      const c = withCancel(shared.signal);
      for (let j = 0; j < 100; j++) x = Math.trunc(x / (x + 1));
      c.controller.abort();
      for (let j = 0; j < 100; j++) x = Math.trunc(x / (x + 1));
    }
    sink += x;
  });
}

async function benchWithTimeoutIdle() {
  if (!groupWanted('with_timeout/')) return;
  for (const idle of [40, 4000, 400000]) {
    const name = `with_timeout/idle=${idle}`;
    if (!wanted(name)) continue;
    let held = [];
    for (let i = 0; i < idle; i++) held.push(AbortSignal.timeout(HOUR));
    await measure(name, (n) => {
      for (let i = 0; i < n; i++) cancelTimeout(withTimeout(null, HOUR));
    });
    held = null;
  }
}

function buildTree(rootSignal, depth) {
  let s = rootSignal;
  for (let d = 0; d < depth; d++) s = withCancel(s).signal;
  return s;
}

async function benchCancelTree() {
  if (!groupWanted('cancel_tree/')) return;
  for (const d of [1, 10, 100, 1000]) {
    await measure(`cancel_tree/depth=${d}/root=background`, (n) => {
      for (let i = 0; i < n; i++) buildTree(null, d);
    });
    await measure(`cancel_tree/depth=${d}/root=open`, (n) => {
      for (let i = 0; i < n; i++) {
        const root = new AbortController();
        buildTree(root.signal, d);
        root.abort();
      }
    });
    await measure(`cancel_tree/depth=${d}/root=closed`, (n) => {
      for (let i = 0; i < n; i++) {
        const root = new AbortController();
        root.abort();
        buildTree(root.signal, d);
      }
    });
  }
}

async function benchCheckCanceled() {
  if (!groupWanted('check_canceled/')) return;
  const c = new AbortController();
  c.abort();
  const s = c.signal;
  await measure('check_canceled/err', (n) => {
    let acc = 0;
    for (let i = 0; i < n; i++) if (s.aborted) acc++;
    sink += acc;
  });
}

async function benchCancelDelivery() {
  if (!groupWanted('cancel_delivery/')) return;
  const reps = opt.smoke ? 1 : 3;
  for (const live of [1000, 100000]) {
    const n50 = `cancel_delivery/live=${live}/from=loop/p50`;
    const n99 = `cancel_delivery/live=${live}/from=loop/p99`;
    if (!wanted(n50) && !wanted(n99)) continue;
    if (opt.list) {
      emit(n50, 0, 'ns');
      emit(n99, 0, 'ns');
      continue;
    }
    const root = new AbortController();
    let others = [];
    for (let i = 0; i < live; i++) others.push(withCancel(root.signal));
    gc();
    const p50s = [], p99s = [];
    const lat = new Float64Array(opt.samples);
    let tRecv = 0n;
    const onAbort = () => { tRecv = now(); };
    for (let r = -1; r < reps; r++) {
      for (let i = 0; i < opt.samples; i++) {
        const c = withCancel(root.signal);
        c.signal.addEventListener('abort', onAbort, { once: true });
        const t0 = now();
        c.controller.abort();
        lat[i] = Number(tRecv - t0);
      }
      if (r >= 0) {
        const s = Array.from(lat).sort((a, b) => a - b);
        p50s.push(s[Math.floor(0.5 * (opt.samples - 1))]);
        p99s.push(s[Math.floor(0.99 * (opt.samples - 1))]);
      }
    }
    if (wanted(n50)) emit(n50, median(p50s), 'ns');
    if (wanted(n99)) emit(n99, median(p99s), 'ns');
    others = null;
    root.abort();
  }
}

const t0 = now();
console.log(`# node: ${process.version}, ${opt.smoke ? 'smoke' : 'full'}, target ${opt.time} ms x ${opt.reps} reps${globalThis.gc ? '' : ' (no --expose-gc: memory results unreliable)'}`);
await benchMillion();
await benchMem();
await benchCreateCancelRelease();
await benchCommonParent();
await benchWithTimeoutIdle();
await benchCancelTree();
await benchCheckCanceled();
await benchCancelDelivery();
console.log(`# total ${(Number(now() - t0) / 1e9).toFixed(2)} s`);
void sink;
process.exit(0);
