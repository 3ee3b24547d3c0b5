// Clients for integration tests: MQTT.js, raw TCP sockets, and command-line tools.

import { connect, type Socket } from 'node:net';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Test } from 'tap';

export { run, type RunResult } from './process.js';

/** An MQTT.js client on 127.0.0.1:port, not reconnecting unless asked; teardown ends it. */
export async function connectClient(t: Test, port: number, opts: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  t.teardown(() => client.endAsync(true));
  return client;
}

export interface Received {
  topic: string;
  payload: Buffer;
  packet: IPublishPacket;
}

export interface MessageCollector {
  /** The next n messages after those already returned; rejects after timeoutMs (5 s) with what arrived. */
  next(n: number, timeoutMs?: number): Promise<Received[]>;
  /** Every message received so far. */
  all(): Received[];
}

export function messageCollector(client: MqttClient): MessageCollector {
  const received: Received[] = [];
  let cursor = 0;
  let wake: (() => void) | undefined;
  client.on('message', (topic, payload, packet) => {
    received.push({ topic, payload, packet });
    wake?.();
  });
  return {
    all: () => received,
    next: (n, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        if (wake !== undefined) {
          reject(new Error('messageCollector: next() is already waiting'));
          return;
        }
        const check = (): void => {
          if (received.length - cursor < n) return;
          clearTimeout(timer);
          wake = undefined;
          const batch = received.slice(cursor, cursor + n);
          cursor += n;
          resolve(batch);
        };
        const timer = setTimeout(() => {
          wake = undefined;
          const got = received.slice(cursor).map((m) => `${m.topic}: ${m.payload.toString()}`);
          reject(new Error(`expected ${n} message(s) within ${timeoutMs} ms, got ${got.length}: ${JSON.stringify(got)}`));
        }, timeoutMs);
        wake = check;
        check();
      }),
  };
}

export interface RawClient {
  readonly socket: Socket;
  send(bytes: Uint8Array | readonly number[]): void;
  /** The next n bytes, or fewer if the peer closes first; rejects after timeoutMs (5 s). */
  read(n: number, timeoutMs?: number): Promise<Buffer>;
  /** Resolves once the peer has closed the connection; rejects after timeoutMs (5 s). */
  closed(timeoutMs?: number): Promise<void>;
  readonly isClosed: boolean;
}

/** A raw TCP socket to 127.0.0.1:port (from `localAddress`, another loopback address, when given) for byte-level tests; teardown destroys it. */
export async function rawConnect(t: Test, port: number, localAddress?: string): Promise<RawClient> {
  const socket = connect({ host: '127.0.0.1', port, ...(localAddress === undefined ? {} : { localAddress }) });
  t.teardown(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let buffered = Buffer.alloc(0);
  let isClosed = false;
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    wake?.();
  });
  socket.on('error', () => {
    // a reset shows up as 'close' too
  });
  socket.on('close', () => {
    isClosed = true;
    wake?.();
  });

  /** Waits until ready() holds or timeoutMs passes; one waiter at a time. */
  const waitFor = (ready: () => boolean, timeoutMs: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      if (wake !== undefined) {
        reject(new Error('rawConnect: already waiting'));
        return;
      }
      const check = (): void => {
        if (!ready()) return;
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      const timer = setTimeout(() => {
        wake = undefined;
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; buffered ${buffered.toString('hex')}`));
      }, timeoutMs);
      wake = check;
      check();
    });

  return {
    socket,
    get isClosed() {
      return isClosed;
    },
    send: (bytes) => {
      socket.write(Buffer.from(bytes));
    },
    read: async (n, timeoutMs = 5000) => {
      await waitFor(() => buffered.length >= n || isClosed, timeoutMs, `${n} bytes`);
      const out = buffered.subarray(0, n);
      buffered = buffered.subarray(out.length);
      return out;
    },
    closed: (timeoutMs = 5000) => waitFor(() => isClosed, timeoutMs, 'the peer to close'),
  };
}
