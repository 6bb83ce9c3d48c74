// Node peer of the HTTP server sample for bench/serve: node:http doing the
// sample's work, the way a Node server would write it.
//
//   - an idle timeout per connection (server.keepAliveTimeout), as the
//     sample's per-connection uvctx_with_timeout;
//   - an AbortSignal.timeout per request, as the sample's per-request
//     uvctx_with_timeout; /slow's work stops when it fires or the client
//     goes away (the sample's request context is a child of its
//     connection's). AbortSignal.any([timeout, gone]) would say that in one
//     line, but in Node 20 it halves this server's requests/s (GET /: 2,981
//     against 5,975 with AbortSignal.timeout alone, one run on a loaded
//     2-core machine), so the work's own AbortController listens to both;
//   - GET / answers a short greeting; GET /slow?ms=N answers after N ms of
//     timer work (timers/promises setTimeout, aborted with the request), or
//     504 when the request's deadline passes first;
//   - SIGTERM: close the listener and the idle connections, exit 0.
//
//   node server.mjs [--port 0] [--idle MS] [--request MS] [--workers N]
//
// --workers N > 1: node:cluster, a primary that accepts and hands the
// connections to N worker processes (round robin): Node's way to use N
// cores. Prints "listening on 127.0.0.1:PORT" once it accepts connections.
import cluster from 'node:cluster';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    idle: { type: 'string', default: '5000' },
    request: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '1' },
  },
});
const idleMs = Number(opt.idle);
const requestMs = Number(opt.request);
const workers = Number(opt.workers);

function serve(port, onListening) {
  const server = http.createServer(async (req, res) => {
    const deadline = AbortSignal.timeout(requestMs);
    const url = new URL(req.url, 'http://x');
    res.setHeader('Content-Type', 'text/plain');
    if (url.pathname === '/') {
      res.end('hello from node\n');
    } else if (url.pathname === '/slow') {
      const ms = Number(url.searchParams.get('ms') ?? 1000);
      const work = new AbortController();
      const stop = () => work.abort();
      deadline.addEventListener('abort', stop, { once: true });
      res.on('close', stop);
      try {
        await sleep(ms, undefined, { signal: work.signal });
        res.end(`slept ${ms} ms\n`);
      } catch {
        if (deadline.aborted) {
          res.statusCode = 504;
          res.end('gateway timeout: the request deadline passed\n');
        }
      } finally {
        deadline.removeEventListener('abort', stop);
      }
    } else {
      res.statusCode = 404;
      res.end('not found\n');
    }
  });
  server.keepAliveTimeout = idleMs;
  server.listen(port, '127.0.0.1', () => onListening(server.address().port));
  process.on('SIGTERM', () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}

const announce = (port) => console.error(`listening on 127.0.0.1:${port}`);

if (workers <= 1) {
  serve(Number(opt.port), announce);
} else if (cluster.isPrimary) {
  // The primary listens for the workers: every worker asks for the same
  // address and port (0 included), so they share its one listener.
  let ready = 0;
  cluster.on('listening', (worker, address) => {
    if (++ready === workers) announce(address.port);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
    });
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  });
} else {
  serve(Number(opt.port), () => {});
}
