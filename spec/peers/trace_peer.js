// spec/peers/trace_peer.js -- an independent span collector for the
// tracing specs: receives what the engine exports over HTTP on loopback
// and decodes it with independent code.  OTLP/HTTP JSON is checked field
// by field against the official OpenTelemetry protos (shipped in
// @opentelemetry/otlp-grpc-exporter-base, loaded with protobufjs), then
// encoded to protobuf and decoded back; Zipkin v2 JSON is checked against
// the zipkin2 span model and rebuilt with zipkin-js (the `zipkin`
// package), whose JSON_V2 encoding must give back what was received.
//
//   node trace_peer.js --format otlp|zipkin --out FILE [--raw FILE]
//                      [--port N] [--ttl S]
//
// As a Zipkin server it also answers GET /api/v2/trace/ID with the spans
// of that trace it received.  --raw keeps each accepted request body, one
// a line.  Prints "READY <port>"; appends one line per span to FILE:
//   SPAN trace=<hex> id=<hex> parent=<hex|-> service=<name> name=<topic>
//        worker=<n> error=<0|1> wait=<ns>
// and "INVALID <reason>" for a request it refuses (answered 400).
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

const args = {};
for (let i = 2; i < process.argv.length; i += 2)
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const format = args.format;
const out = args.out;
if (!['otlp', 'zipkin'].includes(format) || !out) {
  console.error('usage: trace_peer.js --format otlp|zipkin --out FILE [--port N]');
  process.exit(2);
}

function write(line) { fs.appendFileSync(out, line + '\n'); }
function fail(msg) { throw new Error(msg); }
const HEX = (n) => new RegExp('^[0-9a-f]{' + n + '}$');

// ---- OTLP ---------------------------------------------------------------
let Request;
if (format === 'otlp') {
  const protobuf = require('protobufjs');
  const base = path.dirname(require.resolve(
    '@opentelemetry/otlp-grpc-exporter-base/package.json'));
  const dir = path.join(base, 'build', 'protos');
  const root = new protobuf.Root();
  root.resolvePath = (_, target) => path.join(dir, target);
  root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
  root.resolveAll();
  Request = root.lookupType(
    'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
}

// OTLP JSON (the OTLP spec's JSON mapping of the protos): lowerCamelCase
// field names, trace and span ids as hex, enums as integers, 64-bit
// integers as decimal strings or numbers.  Returns the object protobufjs'
// fromObject takes (ids as base64).
function otlpCheck(v, type, where) {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    fail(where + ': expected an object for ' + type.fullName);
  const res = {};
  for (const key of Object.keys(v)) {
    const f = type.fields[key];
    if (!f) fail(where + ': no field "' + key + '" in ' + type.fullName);
    const one = (x, w) => {
      f.resolve();
      if (f.resolvedType && f.resolvedType instanceof require('protobufjs').Type)
        return otlpCheck(x, f.resolvedType, w);
      if (f.resolvedType) { // an enum
        if (!Number.isInteger(x) || !(x in f.resolvedType.valuesById))
          fail(w + ': enum ' + f.resolvedType.name + ' wants an integer value, got ' + JSON.stringify(x));
        return x;
      }
      if (f.type === 'bytes') {
        const n = key === 'traceId' ? 32 : 16;
        if (typeof x !== 'string' || !HEX(n).test(x))
          fail(w + ': ' + key + ' must be ' + n + ' lowercase hex digits, got ' + JSON.stringify(x));
        return Buffer.from(x, 'hex').toString('base64');
      }
      if (/^(u?int64|fixed64|sfixed64)$/.test(f.type)) {
        if (!(typeof x === 'string' && /^-?\d+$/.test(x)) && !Number.isInteger(x))
          fail(w + ': ' + key + ' must be a decimal integer, got ' + JSON.stringify(x));
        return x;
      }
      if (f.type === 'string' && typeof x !== 'string') fail(w + ': ' + key + ' must be a string');
      if (f.type === 'bool' && typeof x !== 'boolean') fail(w + ': ' + key + ' must be a boolean');
      return x;
    };
    if (f.repeated) {
      if (!Array.isArray(v[key])) fail(where + ': ' + key + ' must be an array');
      res[key] = v[key].map((x, i) => one(x, where + '.' + key + '[' + i + ']'));
    } else {
      res[key] = one(v[key], where + '.' + key);
    }
  }
  return res;
}

function attrs(list) {
  const m = {};
  for (const a of list || []) {
    const v = a.value || {};
    m[a.key] = v.stringValue !== undefined ? v.stringValue
      : v.intValue !== undefined ? String(v.intValue)
        : v.boolValue !== undefined ? String(v.boolValue) : '';
  }
  return m;
}

function otlp(body) {
  const checked = otlpCheck(JSON.parse(body), Request, 'request');
  const msg = Request.fromObject(checked);
  const err = Request.verify(msg);
  if (err) fail(err);
  // Through the protobuf encoding and back: what a collector would read.
  const bytes = Request.encode(msg).finish();
  const req = Request.toObject(Request.decode(bytes),
                               { longs: String, bytes: String, defaults: false });
  const hex = (b) => Buffer.from(b, 'base64').toString('hex');
  const spans = [];
  for (const rs of req.resourceSpans || []) {
    const res = attrs(rs.resource && rs.resource.attributes);
    if (!res['service.name']) fail('a resource without service.name');
    for (const ss of rs.scopeSpans || [])
      for (const s of ss.spans || []) {
        const a = attrs(s.attributes);
        if (!(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano)))
          fail('span ' + hex(s.spanId) + ' ends before it starts');
        spans.push({
          trace: hex(s.traceId), id: hex(s.spanId),
          parent: s.parentSpanId && s.parentSpanId.length ? hex(s.parentSpanId) : '-',
          service: res['service.name'], name: s.name,
          worker: a['mycelium.worker'],
          error: s.status && s.status.code === 2 ? 1 : 0,
          wait: a['mycelium.queue_wait_ns'] || '0',
        });
      }
  }
  return spans;
}

// ---- Zipkin ---------------------------------------------------------------
// The fields of the zipkin2 Span model (zipkin-api's zipkin2-api.yaml).
const ZIPKIN_FIELDS = ['traceId', 'name', 'parentId', 'id', 'kind', 'timestamp',
  'duration', 'debug', 'shared', 'localEndpoint', 'remoteEndpoint',
  'annotations', 'tags'];
const ZIPKIN_KINDS = ['CLIENT', 'SERVER', 'PRODUCER', 'CONSUMER'];

function zipkinSpan(s, i) {
  const z = require('zipkin');
  const w = 'span[' + i + ']';
  for (const k of Object.keys(s))
    if (!ZIPKIN_FIELDS.includes(k)) fail(w + ': no field "' + k + '" in a zipkin2 span');
  if (!/^([0-9a-f]{16}|[0-9a-f]{32})$/.test(s.traceId)) fail(w + ': traceId');
  if (!HEX(16).test(s.id)) fail(w + ': id');
  if (s.parentId !== undefined && !HEX(16).test(s.parentId)) fail(w + ': parentId');
  if (s.kind !== undefined && !ZIPKIN_KINDS.includes(s.kind)) fail(w + ': kind');
  for (const k of ['timestamp', 'duration'])
    if (s[k] !== undefined && !(Number.isInteger(s[k]) && s[k] > 0))
      fail(w + ': ' + k + ' must be a positive integer (microseconds)');
  const tags = s.tags || {};
  for (const k of Object.keys(tags))
    if (typeof tags[k] !== 'string') fail(w + ': tag ' + k + ' must be a string');
  const ep = s.localEndpoint || {};
  for (const k of Object.keys(ep))
    if (!['serviceName', 'ipv4', 'ipv6', 'port'].includes(k)) fail(w + ': localEndpoint.' + k);
  // Rebuilt with zipkin-js' model: its JSON v2 encoding must be the same.
  const id = new z.TraceId({
    traceId: s.traceId, spanId: s.id,
    parentId: s.parentId ? new z.option.Some(s.parentId) : z.option.None,
    sampled: z.option.None,
  });
  const m = new z.model.Span(id);
  if (s.name !== undefined) m.setName(s.name);
  if (s.kind !== undefined) m.setKind(s.kind);
  if (s.timestamp !== undefined) m.setTimestamp(s.timestamp);
  if (s.duration !== undefined) m.setDuration(s.duration);
  if (s.localEndpoint) m.setLocalEndpoint(new z.model.Endpoint(ep));
  for (const k of Object.keys(tags)) m.putTag(k, tags[k]);
  const again = JSON.parse(z.jsonEncoder.JSON_V2.encode(m));
  const sorted = (o) => JSON.stringify(o, Object.keys(o).sort());
  if (JSON.stringify(again.tags || {}) !== JSON.stringify(tags) ||
      sorted({ ...again, tags: 0 }) !== sorted({ ...s, tags: 0 }))
    fail(w + ': zipkin-js encodes it differently: ' + JSON.stringify(again));
  return {
    trace: s.traceId, id: s.id, parent: s.parentId || '-',
    service: ep.serviceName, name: s.name,
    worker: tags['mycelium.worker'], error: tags.error !== undefined ? 1 : 0,
    wait: String(Number(tags['mycelium.queue_wait_us'] || 0) * 1000),
  };
}

const received = []; // zipkin spans, as they came
function zipkin(body) {
  const list = JSON.parse(body);
  if (!Array.isArray(list)) fail('a zipkin2 request is an array of spans');
  const spans = list.map(zipkinSpan);
  received.push(...list);
  return spans;
}

// ---- the server -------------------------------------------------------------
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const get = /^\/api\/v2\/trace\/([0-9a-f]+)$/.exec(req.url);
    if (req.method === 'GET' && get && format === 'zipkin') {
      const spans = received.filter((s) => s.traceId === get[1]);
      res.writeHead(spans.length ? 200 : 404, { 'Content-Type': 'application/json' });
      res.end(spans.length ? JSON.stringify(spans) : 'trace not found');
      return;
    }
    try {
      if (req.method !== 'POST') fail('method ' + req.method);
      if (!/^application\/json/.test(req.headers['content-type'] || ''))
        fail('content-type ' + req.headers['content-type']);
      const spans = format === 'otlp' ? otlp(body) : zipkin(body);
      if (args.raw) fs.appendFileSync(args.raw, body.replace(/\n/g, ' ') + '\n');
      write(spans.map((s) => `SPAN trace=${s.trace} id=${s.id} parent=${s.parent} ` +
        `service=${s.service} name=${s.name} worker=${s.worker} error=${s.error} ` +
        `wait=${s.wait}`).join('\n'));
      res.writeHead(format === 'otlp' ? 200 : 202, { 'Content-Type': 'application/json' });
      res.end(format === 'otlp' ? '{}' : '');
    } catch (e) {
      write('INVALID ' + e.message.replace(/\n/g, ' '));
      res.writeHead(400);
      res.end(e.message);
    }
  });
});
server.listen(Number(args.port || 0), '127.0.0.1', () => {
  console.log('READY ' + server.address().port);
});
setTimeout(() => process.exit(0), Number(args.ttl || 120) * 1000).unref();
