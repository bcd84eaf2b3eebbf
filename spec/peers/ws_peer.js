// ws_peer.js -- independent WebSocket peers for spec/mycelium/ws_spec.lua.
//
//   node ws_peer.js [--tls CERT KEY] [--ttl SECONDS]
//
// Listens on two free ports of 127.0.0.1 and prints one line
// "READY <ws-port> <raw-port>":
//  * ws-port: the npm `ws` server (an implementation independent of ours),
//    behaving by request path:
//      /echo              echoes every message (text or binary)
//      /fragment?size=N   sends one N-byte text message in 64 KiB fragments,
//                         then echoes
//      /close?code=C&reason=R   closes with C/R after the first message
//      /ping              pings the client with "hello" and reports the pong
//                         payload back as the text "pong:<payload>"
//      /silent            ignores pings (no automatic pong) and sends nothing
//      /drop?after=N      destroys the TCP connection after N messages
//      /count             answers each message with "n=<count>"
//  * raw-port: a hostile peer on a bare TCP socket that completes (or
//    botches) the upgrade and then writes broken frames, by path: see
//    HOSTILE below; or valid frames cut awkwardly: see TRICKY.
// Exits by itself after --ttl seconds (default 120) so a crashed test
// cannot leave it behind.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');
const net = require('net');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
let tls = null;
let ttl = 120;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--tls') {
    tls = { cert: fs.readFileSync(args[i + 1]), key: fs.readFileSync(args[i + 2]) };
    i += 2;
  } else if (args[i] === '--ttl') {
    ttl = Number(args[++i]);
  }
}
setTimeout(() => process.exit(0), ttl * 1000).unref();

const server = tls ? https.createServer(tls) : http.createServer();
const wss = new WebSocketServer({ noServer: true, maxPayload: 256 * 1024 * 1024 });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const autoPong = url.pathname !== '/silent';
  const s = new WebSocketServer({ noServer: true, autoPong, maxPayload: 256 * 1024 * 1024 });
  s.handleUpgrade(req, socket, head, (ws) => behave(ws, url));
});

function behave(ws, url) {
  const q = url.searchParams;
  let count = 0;
  switch (url.pathname) {
    case '/fragment': {
      const size = Number(q.get('size') || 1048576);
      const body = Buffer.alloc(size, 'x');
      body.write('BEGIN', 0);
      body.write('END', size - 3);
      const piece = 65536;
      for (let off = 0; off < size; off += piece) {
        const end = Math.min(size, off + piece);
        ws.send(body.subarray(off, end), { binary: false, fin: end === size });
      }
      break;
    }
    case '/burst': {
      // n messages in one write (corked): the client reads many per read.
      const n = Number(q.get('n') || 100);
      ws._socket.cork();
      for (let i = 1; i <= n; i++) ws.send('m' + i, { binary: i % 7 === 0 });
      ws._socket.uncork();
      break;
    }
    case '/ping':
      ws.on('pong', (data) => ws.send('pong:' + data.toString()));
      ws.ping('hello');
      break;
    default:
      break;
  }
  ws.on('message', (data, isBinary) => {
    count++;
    switch (url.pathname) {
      case '/close':
        ws.close(Number(q.get('code') || 1000), q.get('reason') || '');
        return;
      case '/drop':
        if (count >= Number(q.get('after') || 1)) ws.terminate();
        else ws.send(data, { binary: isBinary });
        return;
      case '/count':
        ws.send('n=' + count);
        return;
      case '/silent':
        return;
      default:
        ws.send(data, { binary: isBinary });
    }
  });
}

// ---- the hostile peer ----------------------------------------------------

function frame(first, second, extra, payload) {
  return Buffer.concat([Buffer.from([first, second]), extra || Buffer.alloc(0),
                        payload || Buffer.alloc(0)]);
}

const HOSTILE = {
  // frames with the reserved bit RSV1 set and no extension negotiated
  '/reserved': () => frame(0x81 | 0x40, 2, null, Buffer.from('hi')),
  // opcode 3 is reserved
  '/badopcode': () => frame(0x83, 2, null, Buffer.from('hi')),
  // a server must not mask its frames
  '/masked': () => frame(0x81, 0x80 | 2, Buffer.from([1, 2, 3, 4]),
                         Buffer.from([0x69 ^ 1, 0x69 ^ 2])),
  // a text message that is not UTF-8
  '/badutf8': () => frame(0x81, 2, null, Buffer.from([0xc3, 0x28])),
  // announces 2^62 bytes: must be refused before allocating
  '/hugelen': () => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64BE(1n << 62n);
    return frame(0x82, 127, len, Buffer.from('xx'));
  },
  // a ping longer than 125 bytes
  '/longping': () => frame(0x89, 126, Buffer.from([0, 200]), Buffer.alloc(200)),
  // a continuation frame with no message started
  '/orphan': () => frame(0x80, 2, null, Buffer.from('hi')),
  // half a frame, then the connection ends
  '/truncated': () => frame(0x81, 10, null, Buffer.from('abc')),
};

// Frames that are valid but cut awkwardly: the client must put them back
// together whatever its reads hold.
function f(fin, op, payload) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const head = p.length < 126 ? Buffer.from([(fin ? 0x80 : 0) | op, p.length])
    : Buffer.from([(fin ? 0x80 : 0) | op, 126, p.length >> 8, p.length & 255]);
  return Buffer.concat([head, p]);
}

// "hello", a 300-byte text starting with a euro sign, "fr\u00e9-end" in
// three fragments with a ping and an unasked pong between them (the
// "\u00e9" cut between fragments), then a close 1000 "bye".
function mixed() {
  return Buffer.concat([
    f(1, 1, 'hello'),
    f(1, 1, Buffer.concat([Buffer.from('\u20ac'), Buffer.alloc(297, 'x')])),
    f(0, 1, Buffer.from([0x66, 0x72, 0xc3])),
    f(1, 9, 'p'),
    f(0, 0, Buffer.from([0xa9, 0x2d])),
    f(1, 10, 'unasked'),
    f(1, 0, 'end'),
    f(1, 8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('bye')])),
  ]);
}

const TRICKY = {
  // all of mixed() in one write
  '/mixed': (sock) => sock.write(mixed()),
  // mixed() one byte per write, 1 ms apart: reads end inside every part
  '/trickle': (sock) => {
    const all = mixed();
    let i = 0;
    const next = () => {
      if (i < all.length && !sock.destroyed) {
        sock.write(all.subarray(i, ++i));
        setTimeout(next, 1);
      }
    };
    next();
  },
  // "ok", then a text frame whose invalid UTF-8 ("\xe2\x82(") is cut
  // across two writes 100 ms apart
  '/splitutf8': (sock) => {
    const bad = f(1, 1, Buffer.from([0x61, 0x62, 0xe2, 0x82, 0x28, 0x63]));
    sock.write(Buffer.concat([f(1, 1, 'ok'), bad.subarray(0, 5)]));
    setTimeout(() => sock.write(bad.subarray(5)), 100);
  },
};

function accept(key) {
  return crypto.createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
}

const raw = net.createServer((sock) => {
  let head = '';
  sock.on('error', () => {});
  sock.on('data', function onData(chunk) {
    head += chunk.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    sock.removeListener('data', onData);
    sock.on('data', () => {}); // whatever the client answers
    const path = head.split(' ')[1];
    const key = (/sec-websocket-key: *([^\r\n]*)/i.exec(head) || [])[1] || '';
    if (path === '/http404') {
      sock.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (path === '/garbage') {
      sock.end('SSH-2.0-OpenSSH_9.2\r\n\r\n');
      return;
    }
    const acc = path === '/badaccept' ? 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' : accept(key);
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
               'Connection: Upgrade\r\nSec-WebSocket-Accept: ' + acc + '\r\n\r\n');
    if (TRICKY[path]) {
      TRICKY[path](sock);
      setTimeout(() => sock.destroy(), 5000).unref();
      return;
    }
    const bad = HOSTILE[path];
    if (bad) {
      sock.write(bad());
      if (path === '/truncated') sock.end();
      else setTimeout(() => sock.destroy(), 2000).unref();
    }
  });
});

let ready = 0;
function listening() {
  if (++ready === 2) {
    process.stdout.write(`READY ${server.address().port} ${raw.address().port}\n`);
  }
}
server.listen(0, '127.0.0.1', listening);
raw.listen(0, '127.0.0.1', listening);
