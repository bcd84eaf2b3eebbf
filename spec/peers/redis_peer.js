// redis_peer.js -- broken and hostile Redis servers for
// spec/hostile/redis_spec.lua.
//
//   node redis_peer.js [--ttl SECONDS]
//
// Listens on one free port of 127.0.0.1 per behaviour below and prints one
// line "READY {"extra":port,...}".  Each behaviour answers every read from
// a client (a command, or a pipeline of them) as its name says.  Exits by
// itself after --ttl seconds (default 120).
'use strict';
const net = require('net');

const args = process.argv.slice(2);
let ttl = 120;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--ttl') ttl = Number(args[++i]);
}
setTimeout(() => process.exit(0), ttl * 1000).unref();

const BEHAVIOURS = {
  // five replies to one command (hiredis 0.14 asserted on the second)
  extra: { reply: '+OK\r\n'.repeat(5) },
  // a reply before any command
  greet: { greet: '+HELLO\r\n' },
  // what a Redis at its connection limit says, then it hangs up
  full: { greet: '-ERR max number of clients reached\r\n', end: true },
  // not RESP at all
  garbage: { reply: 'SSH-2.0-OpenSSH_9.2\r\n' },
  // RESP3's map type, which a RESP2 client never asked for
  resp3: { reply: '%1\r\n+a\r\n:1\r\n' },
  // arrays nested deeper than the reader goes
  deep: { reply: '*1\r\n'.repeat(12) + ':1\r\n' },
  // half a bulk string, then the connection ends
  truncated: { reply: '$10\r\nabc', end: true },
  // announces 2 GiB of bulk string and sends three bytes
  bigbulk: { reply: '$2147483647\r\nabc' },
  // a negative length that is not -1
  badlen: { reply: '$-7\r\n' },
  // never answers
  silent: {},
  // answers one byte every 50 ms
  drip: { reply: '+PONG\r\n', drip: 50 },
};

const ports = {};
let pending = Object.keys(BEHAVIOURS).length;

function serve(name, b) {
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    if (b.greet) {
      if (b.end) sock.end(b.greet);
      else sock.write(b.greet);
    }
    sock.on('data', () => {
      if (!b.reply) return;
      if (b.drip) {
        let i = 0;
        const t = setInterval(() => {
          if (i >= b.reply.length || sock.destroyed) return clearInterval(t);
          sock.write(b.reply[i++]);
        }, b.drip);
        t.unref();
      } else if (b.end) {
        sock.end(b.reply);
      } else {
        sock.write(b.reply);
      }
    });
  });
  server.listen(0, '127.0.0.1', () => {
    ports[name] = server.address().port;
    if (--pending === 0) process.stdout.write(`READY ${JSON.stringify(ports)}\n`);
  });
}

for (const [name, b] of Object.entries(BEHAVIOURS)) serve(name, b);
