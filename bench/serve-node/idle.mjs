// Opens N keep-alive connections to an HTTP server, sends one GET / on each
// and keeps them open and idle: each then sits in the server with its idle
// timeout armed (the sample's per-connection uvctx_with_timeout, Go's
// IdleTimeout, Node's keepAliveTimeout). For bench/serve's "idle" row.
//
//   node idle.mjs PORT N
//
// Prints "idle N" once every connection has had its answer, then waits
// until it is killed (SIGTERM). Exits 1 if a connection fails or closes.
import net from 'node:net';

const [port, n] = process.argv.slice(2).map(Number);
const request = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
let answered = 0;
let opening = 0;
const sockets = [];

// A few hundred connects at a time: a burst of 10,000 would overflow the
// server's listen backlog, and the kernel would drop the SYNs and retry
// them a second later.
function openMore() {
  while (opening < 256 && sockets.length < n) {
    const s = net.connect(port, '127.0.0.1');
    sockets.push(s);
    opening++;
    let got = false;
    s.on('connect', () => s.write(request));
    s.on('data', () => {
      if (got) return;
      got = true;
      opening--;
      if (++answered === n) console.log(`idle ${n}`);
      openMore();
    });
    s.on('error', (e) => {
      console.error(`idle: connection ${sockets.indexOf(s)}: ${e.message}`);
      process.exit(1);
    });
    s.on('close', () => {
      console.error('idle: the server closed a connection');
      process.exit(1);
    });
  }
}
openMore();
process.on('SIGTERM', () => process.exit(0));
