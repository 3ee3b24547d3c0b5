// Real clusters for the cluster tests: n node processes on loopback, joined through static seeds
// (`--join name@127.0.0.1:<cluster port>`), waited for by their log lines.

import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';
import { encodeFrame, FrameDecoder, type LinkMessage } from '../../src/cluster/link.js';
import { v5 } from '../helpers/admin.js';
import { repoRoot } from '../helpers/build.js';
import { run, type RunResult } from '../helpers/clients.js';
import { startNode, type NodeProcess, type StartNodeOptions } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 50 ms until it returns true; throws with `what` after timeoutMs. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** How many log lines of the node match `re`. */
export function countLines(node: NodeProcess, re: RegExp): number {
  return node.output().split('\n').filter((l) => re.test(l)).length;
}

/** `name@127.0.0.1:port`: the address form that names a cluster port other than 4370+N. */
export function address(node: Pick<NodeProcess, 'name' | 'clusterPort'>): string {
  return `${node.name}:${node.clusterPort}`;
}

/** Links currently up, from the node's log ('cluster node up' minus 'cluster node down'). */
export function linksUp(node: NodeProcess): number {
  return countLines(node, /"msg":"cluster node up"/) - countLines(node, /"msg":"cluster node down"/) - countLines(node, /"msg":"cluster member removed"/);
}

let clusterCount = 0;

export interface ClusterOptions {
  /** Extra start arguments for every node. */
  args?: string[];
  /** Per-node options (index = node number - 1). */
  each?: Array<Partial<StartNodeOptions>>;
}

/**
 * Starts n nodes; nodes 2..n name node 1 as their static seed. Resolves once every node has a
 * link to every other one.
 */
export async function startCluster(t: Test, n: number, opts: ClusterOptions = {}): Promise<NodeProcess[]> {
  const id = `${process.pid}x${++clusterCount}`;
  const names = Array.from({ length: n }, (_, i) => `c${id}n${i + 1}@127.0.0.1`);
  const ports = await Promise.all(names.map(() => freePort()));
  const seed = `${names[0]}:${ports[0]}`;
  const nodes: NodeProcess[] = [];
  for (let i = 0; i < n; i++) {
    const each = opts.each?.[i] ?? {};
    const args = [...(opts.args ?? []), ...(each.args ?? []), ...(i === 0 ? [] : ['--join', seed])];
    nodes.push(await startNode(t, { ...each, name: names[i] as string, clusterPort: ports[i] as number, args }));
  }
  await waitFor(`a full mesh of ${n} nodes`, () => nodes.every((node) => linksUp(node) >= n - 1), 15_000);
  return nodes;
}

/**
 * An MQTT.js client whose message listener is in place before CONNACK: a resumed session's
 * messages follow the CONNACK at once, before connectAsync would return.
 */
export async function connectListening(
  t: Test,
  port: number,
  opts: IClientOptions,
  onMessage: (topic: string, payload: Buffer, packet: IPublishPacket) => void,
): Promise<{ client: MqttClient; connack: IConnackPacket }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 5000, ...opts, manualConnect: true });
  t.teardown(() => client.endAsync(true));
  client.on('message', onMessage);
  const connack = new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  client.connect();
  return { client, connack: await connack };
}

/** Runs `tidemq ctl --api <node's management API> ...` (the real bin/tidemq). */
export async function ctl(node: Pick<NodeProcess, 'mgmtPort'>, args: string[]): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${node.mgmtPort}`, ...args], { timeoutMs: 20_000 });
}

/** The nodes with a route in a node's route table. */
export async function routeNodes(node: Pick<NodeProcess, 'mgmtPort'>): Promise<string[]> {
  const routes = (await v5(node, 'GET', '/routes')) as Array<{ node: string }>;
  return [...new Set(routes.map((r) => r.node))].sort();
}

/** A raw connection to a node's cluster port that speaks the link framing (the test is the peer). */
export interface LinkProbe {
  readonly socket: Socket;
  /** Frames received so far. */
  readonly frames: LinkMessage[][];
  /** Resolves when the node has closed the connection (or it failed). */
  readonly closed: Promise<void>;
  send(messages: LinkMessage[]): void;
  /** The next frame; throws after timeoutMs or if the connection closes first. */
  next(timeoutMs?: number): Promise<LinkMessage[]>;
}

export async function probeLink(t: Test, port: number): Promise<LinkProbe> {
  const socket = connect({ host: '127.0.0.1', port });
  t.teardown(() => socket.destroy());
  const decoder = new FrameDecoder();
  const frames: LinkMessage[][] = [];
  let taken = 0;
  let isClosed = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => ((isClosed = true), resolve())));
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    for (let f = decoder.next(); f !== undefined; f = decoder.next()) frames.push(f);
  });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return {
    socket,
    frames,
    closed,
    send: (messages) => void socket.write(encodeFrame(messages)),
    async next(timeoutMs = 5000) {
      await waitFor('a frame from the node', () => frames.length > taken || isClosed, timeoutMs);
      if (frames.length <= taken) throw new Error('the node closed the connection');
      return frames[taken++] as LinkMessage[];
    },
  };
}

/** The value of one Prometheus sample of a node (0 when absent); `labels` as in the text, e.g. `reason="timeout"`. */
export async function metric(node: Pick<NodeProcess, 'mgmtPort'>, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.mgmtPort}/metrics`)).text();
  const want = labels === '' ? `${name} ` : `${name}{${labels}} `;
  const line = text.split('\n').find((l) => l.startsWith(want));
  return line === undefined ? 0 : Number(line.slice(want.length));
}
