// spec/peers/nats_peer.js -- an independent NATS client (the npm `nats`
// package) that subscribes to a subject and decodes, from docs/WIRE.md
// alone, the v2 frames a mycelium engine publishes there.  One JSON line
// per message on stdout; exits after 'count' messages or 'seconds'.
//
//   node nats_peer.js nats://127.0.0.1:4222 'mycelium.raw.>' 5 10
"use strict";
const { connect } = require("nats");

const [url, subject, count, seconds] = process.argv.slice(2);

function hex(b) { return Buffer.from(b).toString("hex"); }

// docs/WIRE.md, "v2 message (MSG)": the body without the 6-byte TLV.
function decode(data) {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length < 64) throw new Error("shorter than the 64-byte header");
  const f = {
    frame_len: b.readUInt32LE(0),
    type: b.readUInt16LE(4),
    kind: b.readUInt8(6),
    flags: b.readUInt8(7),
    trace_id: hex(b.subarray(8, 24)),
    span_id: hex(b.subarray(24, 32)),
    parent_id: hex(b.subarray(32, 40)),
    seq: b.readBigUInt64LE(40).toString(),
    ts_ns: b.readBigUInt64LE(48).toString(),
    payload_len: b.readUInt32LE(56),
    topic_len: b.readUInt16LE(60),
    source_len: b.readUInt8(62),
    version: b.readUInt8(63),
  };
  const padded = (f.payload_len + 7) & ~7;
  if (f.frame_len !== b.length) throw new Error("frame_len is not the message length");
  if (f.frame_len !== 64 + padded + f.topic_len + f.source_len)
    throw new Error("lengths do not add up");
  f.payload = b.subarray(64, 64 + f.payload_len).toString("latin1");
  f.padding_zero = b.subarray(64 + f.payload_len, 64 + padded).every((x) => x === 0);
  f.topic = b.subarray(64 + padded, 64 + padded + f.topic_len).toString();
  f.source = b.subarray(64 + padded + f.topic_len).toString();
  return f;
}

(async () => {
  const nc = await connect({ servers: url });
  const sub = nc.subscribe(subject, { max: Number(count) });
  const timer = setTimeout(() => { sub.unsubscribe(); }, Number(seconds) * 1000);
  await nc.flush(); // the server has the subscription before we say ready
  console.log(JSON.stringify({ ready: true }));
  for await (const m of sub) {
    let out;
    try {
      out = decode(m.data);
    } catch (e) {
      out = { error: e.message };
    }
    out.subject = m.subject;
    out.traceparent = m.headers ? m.headers.get("traceparent") : null;
    out.myc_seq = m.headers ? m.headers.get("Myc-Seq") : null;
    console.log(JSON.stringify(out));
  }
  clearTimeout(timer);
  await nc.close();
})().catch((e) => { console.error(String(e)); process.exit(1); });
