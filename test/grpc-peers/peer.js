// A grpc-js peer for test/grpc-e2e.sh: the service of samples/grpc/server
// (uvctx.Test: Echo and Sleep, raw bytes as messages) as a server, or one call
// as a client, with what each side saw printed as wall-clock times (ms since
// the epoch) that the test compares with the uvctx samples' logs.
//
// No .proto: a generic service definition whose serializers pass Buffers
// through. Needs @grpc/grpc-js (package.json and package-lock.json here; the
// test installs them with `npm ci`).
//
// Usage:
//   node peer.js server [-q] [ADDR]       (default 127.0.0.1:0; -q: log no Echo)
//   node peer.js client [-w] [-t BUDGET_MS] [-c CANCEL_MS] ADDR METHOD MESSAGE
'use strict';

const grpc = require('@grpc/grpc-js');

const identity = (x) => x;
const method = (name) => ({
  path: `/uvctx.Test/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const service = { Echo: method('Echo'), Sleep: method('Sleep') };

// Date.now(), not performance.timeOrigin + performance.now(): Node reads
// the two clocks behind timeOrigin at different instants, and on a loaded
// machine their sum was seen 20 ms off the wall clock. Whole milliseconds,
// like the deadlines grpc-js gives (Date).
const wallNow = () => Date.now();
const wall = (ms) => ms.toFixed(3);
const log = (line) => process.stderr.write(`grpc-peer-js: ${line}\n`);

// ---- server -------------------------------------------------------------------

function logCall(call, name) {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  if (Number.isFinite(ms))
    log(`call /uvctx.Test/${name} deadline_wall=${wall(ms)} ` +
        `budget=${(ms - wallNow()).toFixed(1)}ms`);
  else
    log(`call /uvctx.Test/${name} no deadline`);
  return ms;
}

let quiet = false; // log no Echo call (bench/grpc measures them)

const handlers = {
  Echo(call, callback) {
    if (quiet)
      return callback(null, call.request);
    logCall(call, 'Echo');
    log(`end /uvctx.Test/Echo: ok wall=${wall(wallNow())}`);
    callback(null, call.request);
  },

  // Works for the number of ms in the request, or until the call is
  // cancelled. grpc-js emits 'cancelled' on every stream close, even after
  // the answer: only the first end counts. A cancel at the deadline is the
  // deadline (grpc-js ends the call itself then; grpc-go clients reset the
  // stream at their deadline too).
  Sleep(call, callback) {
    const deadline = logCall(call, 'Sleep');
    const ms = Number(call.request.toString());
    let ended = false;
    if (!Number.isInteger(ms) || ms < 0) {
      callback({ code: grpc.status.INVALID_ARGUMENT,
                 details: 'expected a number of milliseconds' });
      return;
    }
    const timer = setTimeout(() => {
      ended = true;
      log(`end /uvctx.Test/Sleep: ok wall=${wall(wallNow())}`);
      callback(null, Buffer.from(`slept ${ms} ms`));
    }, ms);
    call.on('cancelled', () => {
      if (ended)
        return;
      ended = true;
      clearTimeout(timer);
      const now = wallNow();
      const kind = Number.isFinite(deadline) && now >= deadline - 1 ? 'deadline' : 'cancel';
      log(`end /uvctx.Test/Sleep: ${kind} wall=${wall(now)}`);
    });
  },
};

function serve(args) {
  quiet = args.includes('-q');
  args = args.filter((a) => a !== '-q');
  const server = new grpc.Server();
  server.addService(service, handlers);
  server.bindAsync(args[0] || '127.0.0.1:0', grpc.ServerCredentials.createInsecure(),
    (err, port) => {
      if (err) {
        log(`bind: ${err.message}`);
        process.exit(1);
      }
      log(`listening on 127.0.0.1:${port}`);
    });
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---- client -------------------------------------------------------------------

function call(args) {
  let budget = 0, cancelAfter = 0, warm = false;
  while (args.length > 0 && args[0].startsWith('-')) {
    const flag = args.shift();
    if (flag === '-w') {
      warm = true;
      continue;
    }
    const value = Number(args.shift());
    if (flag === '-t') budget = value;
    else if (flag === '-c') cancelAfter = value;
    else return usage();
  }
  if (args.length !== 3)
    return usage();
  const [addr, path, message] = args;
  const name = path.replace(/^\/uvctx\.Test\//, '');
  if (!(name in service))
    return usage();

  const Client = grpc.makeGenericClientConstructor(service, 'Test');
  const client = new Client(addr, grpc.credentials.createInsecure());
  if (!warm)
    return measured(client, name, message, budget, cancelAfter);
  // The first call of a process pays for connecting and for the JIT; the
  // deadline measured is the one of a channel in use.
  client.Echo(Buffer.from('warm-up'), (err) => {
    if (err) {
      log(`warm-up: ${err.message}`);
      process.exit(err.code);
    }
    measured(client, name, message, budget, cancelAfter);
  });
}

function measured(client, name, message, budget, cancelAfter) {
  const options = {};
  if (budget > 0) {
    options.deadline = new Date(Date.now() + budget);
    log(`budget ${budget} ms deadline_wall=${wall(options.deadline.getTime())}`);
  }
  const c = client[name](Buffer.from(message), options, (err, answer) => {
    const code = err ? err.code : grpc.status.OK;
    log(`finished: ${grpc.status[code]} wall=${wall(wallNow())}`);
    if (err)
      console.log(`${grpc.status[code]}: ${err.details}`);
    else
      console.log(`OK ${answer.toString()}`);
    // The RST_STREAM of a cancel is written asynchronously: keep the
    // connection a moment, as a long-lived client would.
    setTimeout(() => {
      client.close();
      process.exit(code);
    }, err ? 100 : 0);
  });
  if (cancelAfter > 0)
    setTimeout(() => {
      log(`cancelling wall=${wall(wallNow())}`);
      c.cancel();
    }, cancelAfter);
}

function usage() {
  log('usage: peer.js server [-q] [ADDR] | client [-w] [-t BUDGET_MS] [-c CANCEL_MS] ADDR METHOD MESSAGE');
  process.exit(64);
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') serve(rest);
else if (mode === 'client') call(rest);
else usage();
