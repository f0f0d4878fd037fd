// A fleet's gRPC streams sent by Node's built-in HTTP/2 (nghttp2, in C): the load generator of
// fleet-ingest and fleet-soak when `node` is installed (bench/harness.py run_sender).
//
// The Python generator (grpc.aio) spent some 120 us of CPU a batch on the same two cores as the
// collector it measured, a fifth of the machine at 2,000 batches/s. This one writes each node's
// stream as one body of gRPC-framed messages (a 0 byte, the length big-endian, the message) over one
// HTTP/2 connection, as grpc's channel does, and counts the acknowledgements STORED from the
// response frames: the same streams, messages and flow control, without a Python call per message.
//
// usage: node fleet_send.js HOST:PORT FOLDER   (one file a node: records, each a 4-byte little-endian
// length and a serialized ironsight.v1.Batch). Prints JSON: batches, errors, seconds, cpu_s.
"use strict";
const fs = require("fs");
const http2 = require("http2");
const path = require("path");

const STORED = 1;

function frames(file) {
  const data = fs.readFileSync(file);
  const parts = [];
  for (let at = 0; at < data.length; ) {
    const n = data.readUInt32LE(at);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(n, 1);
    parts.push(head, data.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return Buffer.concat(parts);
}

function varint(buf, at) {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = buf[at++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, at];
    scale *= 128;
  }
}

// An Ack's status (field 2); its other fields (seq, rows) are varints too.
function status(msg) {
  for (let at = 0; at < msg.length; ) {
    let key;
    [key, at] = varint(msg, at);
    let value;
    [value, at] = varint(msg, at);
    if (key >>> 3 === 2) return value;
  }
  return 0;
}

function send(session, body, errors) {
  return new Promise((resolve) => {
    let stored = 0;
    let pending = Buffer.alloc(0);
    const req = session.request({
      ":method": "POST",
      ":path": "/ironsight.v1.Ingest/Stream",
      "content-type": "application/grpc",
      te: "trailers",
    });
    req.on("data", (chunk) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 5) {
        const n = pending.readUInt32BE(1);
        if (pending.length < 5 + n) break;
        stored += status(pending.subarray(5, 5 + n)) === STORED;
        pending = pending.subarray(5 + n);
      }
    });
    req.on("trailers", (trailers) => {
      const code = trailers["grpc-status"];
      if (code !== undefined && code !== "0") errors.push(`grpc-status ${code}: ${trailers["grpc-message"] || ""}`);
    });
    req.on("error", (err) => errors.push(String(err)));
    req.on("close", () => resolve(stored));
    req.end(body);
  });
}

async function main() {
  const [target, folder] = process.argv.slice(2);
  const files = fs.readdirSync(folder).sort().map((f) => path.join(folder, f));
  const bodies = files.map(frames);
  const errors = [];
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  // Node resets streams with ENHANCE_YOUR_CALM once a session holds more than maxSessionMemory (10 MB by
  // default): all 256 bodies are queued at once here, as grpc's channel queues them.
  const session = http2.connect(`http://${target}`, {
    maxSessionMemory: 4096,
    settings: { initialWindowSize: 1 << 24 },
  });
  session.on("error", (err) => errors.push(String(err)));
  const counts = await Promise.all(bodies.map((b) => send(session, b, errors)));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  session.close();
  const cpu = process.cpuUsage(cpu0);
  const batches = counts.reduce((a, b) => a + b, 0);
  process.stdout.write(
    JSON.stringify({ batches, errors: errors.slice(0, 3), seconds, cpu_s: (cpu.user + cpu.system) / 1e6 }) + "\n",
  );
}

main();
