// Helpers for the listener tests: throwaway certificates made with openssl, an in-process node
// with all listeners on free ports and its log lines captured, and WebSocket URLs.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Test } from 'tap';
import { defaultConfig, type Config } from '../../src/config/schema.js';
import { startNode, type NodeHandle } from '../../src/node.js';
import type { ListenerName } from '../../src/broker/tcp-listener.js';
import { run } from '../helpers/process.js';

export interface Certs {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Client certificate with CN=alice, signed by the CA. */
  clientCert: string;
  clientKey: string;
  /** Client certificate with CN=mallory, self-signed (not by the CA). */
  rogueCert: string;
  rogueKey: string;
  /** serverCert and serverKey in one file, as HAProxy's `crt` wants it. */
  serverPem: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const r = await run('openssl', args, { cwd: dir, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** A CA, a server certificate for 127.0.0.1/localhost and client certificates; removed on teardown. */
export async function makeCerts(t: Test): Promise<Certs> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const days = ['-days', '2'];
  await openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=tidemq-test-ca', ...days]);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const [name, cn, ext] of [['server', '127.0.0.1', 'server.ext'], ['client', 'alice', undefined]] as const) {
    await openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, ...days, ...(ext ? ['-extfile', ext] : [])]);
  }
  await openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.crt', '-subj', '/CN=mallory', ...days]);
  const p = (f: string): string => join(dir, f);
  writeFileSync(p('server.pem'), Buffer.concat([readFileSync(p('server.crt')), readFileSync(p('server.key'))]));
  return {
    dir,
    caCert: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    rogueCert: p('rogue.crt'),
    rogueKey: p('rogue.key'),
    serverPem: p('server.pem'),
  };
}

export interface TestNode extends NodeHandle {
  /** Port of a started listener. */
  port(name: ListenerName): number;
  /** Log records so far (the node logs at debug level). */
  logs(): Array<Record<string, unknown>>;
}

type ListenerOverrides = Partial<Config['listeners']>;

/**
 * A node in this process with every port free (listeners, management, cluster) (TLS and WSS when `certs`
 * are given), logging at debug into memory; closed on teardown.
 */
export async function startTestNode(
  t: Test,
  opts: { certs?: Certs; listeners?: ListenerOverrides; mqtt?: Partial<Config['mqtt']>; auth?: Partial<Config['auth']> } = {},
): Promise<TestNode> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tidemq-listeners-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = defaultConfig();
  config.node.data_dir = dataDir;
  Object.assign(config.listeners, { tcp_port: 0, tls_port: 0, ws_port: 0, wss_port: 0 });
  // Every other port free too, so test nodes run side by side.
  config.management.port = 0;
  config.cluster.port = 0;
  if (opts.certs !== undefined) {
    Object.assign(config.listeners, { tls_cert_file: opts.certs.serverCert, tls_key_file: opts.certs.serverKey, tls_ca_file: opts.certs.caCert });
  }
  Object.assign(config.listeners, opts.listeners ?? {});
  Object.assign(config.mqtt, opts.mqtt ?? {});
  Object.assign(config.auth, opts.auth ?? {});
  const records: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const node = await startNode(config, pino({ level: 'debug' }, sink));
  t.teardown(() => node.close());
  return {
    ...node,
    port(name: ListenerName): number {
      const li = node.listeners.find((l) => l.name === name);
      if (li === undefined) throw new Error(`listener ${name} did not start`);
      return li.port;
    },
    logs: () => records,
  };
}

/** Polls `check` every 20 ms until it returns true; fails after timeoutMs. */
export async function eventually(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface RawWs {
  /** The HTTP status line of the upgrade answer, e.g. `HTTP/1.1 101 Switching Protocols`; empty without one. */
  readonly status: string;
  readonly headers: string;
  /** Sends one WebSocket message (masked, as a client must), binary unless opcode says otherwise. */
  send(payload: Uint8Array, opcode?: number): void;
  /** The next n bytes of binary message payloads (message boundaries removed); rejects after timeoutMs. */
  read(n: number, timeoutMs?: number): Promise<Buffer>;
  /** Resolves with the close frame's status code (or undefined) once the server has closed. */
  closed(timeoutMs?: number): Promise<number | undefined>;
  /** Stops / restarts reading from the socket: a slow client. */
  pause(): void;
  resume(): void;
  readonly isClosed: boolean;
}

/**
 * A bare WebSocket client over TCP, for what MQTT.js cannot do: frames cut across messages,
 * several in one, text frames, oversize messages, bad upgrades, a PROXY header first.
 */
export async function rawWs(
  t: Test,
  port: number,
  opts: { path?: string; protocol?: string | undefined; before?: Uint8Array; answerTimeoutMs?: number } = {},
): Promise<RawWs> {
  const socket = connect({ host: '127.0.0.1', port });
  t.teardown(() => {
    socket.destroy();
  });
  let buffered = Buffer.alloc(0);
  let payload = Buffer.alloc(0);
  let closeCode: number | undefined;
  let isClosed = false;
  let wake: (() => void) | undefined;
  socket.on('error', () => {
    // a reset shows up as 'close' too
  });
  socket.on('close', () => {
    isClosed = true;
    wake?.();
  });
  const waitFor = (ready: () => boolean, timeoutMs: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (!ready()) return;
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      const timer = setTimeout(() => {
        wake = undefined;
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      wake = check;
      check();
    });
  let upgraded = false;
  const parseFrames = (): void => {
    for (;;) {
      if (buffered.length < 2) return;
      const op = (buffered[0] as number) & 0x0f;
      let len = (buffered[1] as number) & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buffered.length < 4) return;
        len = buffered.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buffered.length < 10) return;
        len = Number(buffered.readBigUInt64BE(2));
        at = 10;
      }
      if (buffered.length < at + len) return;
      const body = buffered.subarray(at, at + len);
      buffered = buffered.subarray(at + len);
      if (op === 2 || op === 0) payload = Buffer.concat([payload, body]);
      else if (op === 8) closeCode = body.length >= 2 ? body.readUInt16BE(0) : undefined;
    }
  };
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (upgraded) parseFrames();
    wake?.();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  if (opts.before !== undefined) socket.write(opts.before);
  const lines = [
    `GET ${opts.path ?? '/mqtt'} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
  ];
  if (opts.protocol !== undefined) lines.push(`Sec-WebSocket-Protocol: ${opts.protocol}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  // No answer in time leaves the status empty: some refusals are a silence.
  await waitFor(() => buffered.includes('\r\n\r\n') || isClosed, opts.answerTimeoutMs ?? 5000, 'the upgrade answer').catch(() => undefined);
  const end = buffered.indexOf('\r\n\r\n');
  const head = end < 0 ? buffered.toString('latin1') : buffered.subarray(0, end).toString('latin1');
  buffered = end < 0 ? Buffer.alloc(0) : buffered.subarray(end + 4);
  const [status = '', ...rest] = head.split('\r\n');
  upgraded = status.includes(' 101 ');
  if (upgraded) parseFrames();
  return {
    status,
    headers: rest.join('\n'),
    send(data, opcode = 2) {
      const mask = randomBytes(4);
      const len = data.length;
      const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
      if (len >= 126 && len < 65536) {
        head[0] = 0x80 | opcode;
        head[1] = 0x80 | 126;
        head.writeUInt16BE(len, 2);
      } else if (len >= 65536) {
        head[0] = 0x80 | opcode;
        head[1] = 0x80 | 127;
        head.writeBigUInt64BE(BigInt(len), 2);
      }
      const body = Buffer.from(data);
      for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (mask[i & 3] as number);
      socket.write(Buffer.concat([head, mask, body]));
    },
    async read(n, timeoutMs = 5000) {
      await waitFor(() => payload.length >= n || isClosed, timeoutMs, `${n} payload bytes`);
      const out = payload.subarray(0, n);
      payload = payload.subarray(out.length);
      return out;
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    get isClosed() {
      return isClosed;
    },
    async closed(timeoutMs = 5000) {
      await waitFor(() => isClosed, timeoutMs, 'the server to close');
      return closeCode;
    },
  };
}
