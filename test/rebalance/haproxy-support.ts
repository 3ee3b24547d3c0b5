// A real HAProxy in front of test nodes, configured as in the seed (mode tcp, balance leastconn,
// option httpchk on the availability check with the seed's own `http-check send` line), with an
// admin socket to read and change its view of the servers. Shared by the evacuation and rebalance end-to-end tests.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { waitFor } from '../cluster/support.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { freePort } from '../helpers/ports.js';
import { run, startProcess } from '../helpers/process.js';

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
