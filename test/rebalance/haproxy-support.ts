// A real HAProxy in front of test nodes, configured as in the seed (mode tcp, balance leastconn,
// option httpchk on the availability check with the seed's own `http-check send` line), with an
// admin socket to read and change its view of the servers, and the clients that load it. Shared by
// the evacuation, rebalance and blue-green end-to-end tests.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { Test } from 'tap';
import { waitFor } from '../cluster/support.js';
import { repoRoot } from '../helpers/build.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { run, spawnProcess, startProcess } from '../helpers/process.js';

export const NBENCH = join(repoRoot, 'native-bench', 'build', 'nbench');

/** Whether HAProxy is installed (Debian package haproxy). */
export async function haveHaproxy(): Promise<boolean> {
  const r = await run('haproxy', ['-v']).catch(() => undefined);
  return r !== undefined && r.code === 0;
}

export interface HaproxyOptions {
  /** Frontend and global connection limit (4000). */
  maxconn?: number;
  /** Per-server connection limit (1000). */
  serverMaxconn?: number;
}

export interface Haproxy {
  /** The MQTT frontend port on 127.0.0.1. */
  readonly front: number;
  /** The admin socket. */
  readonly socket: string;
}

/** Server names are tidemq1..N in the order of `nodes`, in backend `tidemq`. */
export function haproxyConfig(front: number, socket: string, nodes: ReadonlyArray<Pick<NodeProcess, 'mqttPort' | 'mgmtPort'>>, o: HaproxyOptions = {}): string {
  const maxconn = o.maxconn ?? 4000;
  return `global
  maxconn ${maxconn}
  stats socket ${socket} level admin

defaults
  mode tcp
  timeout connect 5s
  timeout client 60m
  timeout server 60m

listen mqtt
  bind 127.0.0.1:${front}
  mode tcp
  maxconn ${maxconn}
  default_backend tidemq

backend tidemq
  mode tcp
  balance leastconn
  option httpchk
  http-check send meth GET uri /api/v4/load_rebalance/availability_check hdr Authorization "Basic YWRtaW46cHVibGlj"
${nodes.map((n, i) => `  server tidemq${i + 1} 127.0.0.1:${n.mqttPort} check port ${n.mgmtPort} inter 500 fall 2 rise 2 weight 1 maxconn ${o.serverMaxconn ?? 1000}`).join('\n')}
`;
}

/** Starts HAProxy (stopped by PID on teardown) and waits until it sees every node up. */
export async function startHaproxy(t: Test, nodes: readonly NodeProcess[], o: HaproxyOptions = {}): Promise<Haproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-haproxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const front = await freePort();
  const socket = join(dir, 'haproxy.sock');
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, haproxyConfig(front, socket, nodes, o));
  await startProcess(t, { name: 'haproxy', command: 'haproxy', args: ['-f', cfg, '-db'], port: front });
  await waitFor(`HAProxy sees ${nodes.length} servers up`, async () => [...(await serverStates(socket)).values()].filter((s) => s === 'UP').length === nodes.length, 10_000);
  return { front, socket };
}

/** Sends one command to HAProxy's admin socket; resolves with its answer. */
export function haproxyCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', reject);
    s.on('end', () => resolve(out));
    s.write(`${command}\n`);
  });
}

/** HAProxy's view of each server: name -> UP/DOWN/MAINT/..., from `show stat`. */
export async function serverStates(socket: string): Promise<Map<string, string>> {
  const states = new Map<string, string>();
  for (const line of (await haproxyCommand(socket, 'show stat')).split('\n')) {
    const f = line.split(',');
    if (f[0] === 'tidemq' && f[1] !== 'BACKEND') states.set(f[1] as string, (f[17] ?? '').split(' ')[0] as string);
  }
  return states;
}

/**
 * The bulk of a load through HAProxy: two nbench watch processes of `each` connections, persistent
 * 5.0 (`<prefix>A`) and clean 3.1.1 (`<prefix>B`), reconnecting when evicted; stopped by PID.
 */
export function holdNbenchClients(t: Test, front: number, prefix: string, each: number): void {
  for (const [kind, version, persistent] of [['A', '5', true], ['B', '4', false]] as const) {
    const args = ['watch', '-n', String(each), '--port', String(front), '--version', version, '--prefix', `${prefix}${kind}`, '--reconnect-delay', '200', '--max-retries', '1000', '--duration', '600', '--progress', '0'];
    const p = spawnProcess({ name: `nbench ${prefix}${kind}`, command: NBENCH, args: persistent ? [...args, '--persistent', '--session-expiry', '600'] : args });
    t.teardown(() => p.stop('SIGTERM'));
  }
}

/**
 * The checked part of a load: `count` MQTT.js persistent sessions (`<prefix>-q-<i>`, even ones 5.0,
 * odd ones 3.1.1) subscribed to `topic` at QoS 1 through HAProxy, reconnecting when evicted.
 * Returns, per client, the numbers of the payloads it received.
 */
export async function checkedSubscribers(t: Test, front: number, prefix: string, count: number, topic: string): Promise<Array<Set<number>>> {
  const got: Array<Set<number>> = [];
  const clients: MqttClient[] = [];
  t.teardown(() => Promise.all(clients.map((c) => c.endAsync(true))));
  const open = async (i: number): Promise<void> => {
    const v5 = i % 2 === 0;
    const c = mqtt.connect(`mqtt://127.0.0.1:${front}`, {
      clientId: `${prefix}-q-${i}`,
      protocolVersion: v5 ? 5 : 4,
      clean: false,
      ...(v5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
      reconnectPeriod: 300,
      connectTimeout: 10_000,
      keepalive: 60,
    });
    got[i] = new Set();
    clients[i] = c;
    c.on('message', (_topic, payload) => got[i]?.add(Number(payload.toString())));
    c.on('error', () => undefined); // refused reconnects while HAProxy still routes to a draining node
    await new Promise<void>((resolve) => c.once('connect', () => resolve()));
    await c.subscribeAsync(topic, { qos: 1 });
  };
  for (let i = 0; i < count; i += 50) await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, k) => open(i + k)));
  return got;
}

/**
 * Publishes 0, 1, 2, ... at QoS 1 to `topic` every 50 ms (at most `max`) until stopped; `stop()`
 * resolves with how many were published, each acknowledged.
 */
export async function numberedPublisher(t: Test, port: number, clientId: string, topic: string, max: number): Promise<{ stop(): Promise<number> }> {
  const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0 });
  t.teardown(() => pub.endAsync(true));
  let seq = 0;
  let publishing = true;
  const loop = (async () => {
    while (publishing && seq < max) {
      await pub.publishAsync(topic, String(seq++), { qos: 1 });
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      publishing = false;
      await loop;
      return seq;
    },
  };
}
