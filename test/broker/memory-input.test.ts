// Bounded memory on a real node against what clients send before CONNACK: half-open CONNECTs
// (bounded per node by mqtt.max_connecting_bytes) and packets pipelined behind a CONNECT whose
// password check runs (reading paused, bounded by mqtt.max_pending_bytes). RSS sampled from
// /proc; a fresh client must get its CONNACK during and after. Bigger floods with TIDEMQ_LONG_TESTS=1.

import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { rawConnect } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { connackMs, LONG, partialConnect, RUNTIME_SLACK_KB, sampleRss } from './flood.js';
import { bytes, configFile, connectBytes, readPacket, sleep, tidemqPasswd } from './support.js';

const MiB = 1024 * 1024;
const CONNACK_MS = 3000;

async function metric(mgmtPort: number, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mgmtPort}/metrics`)).text();
  const key = labels === '' ? `${name} ` : `${name}{${labels}} `;
  const line = text.split('\n').find((l) => l.startsWith(key));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function open(t: Parameters<typeof rawConnect>[0], port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  t.teardown(() => {
    socket.destroy();
  });
  socket.on('error', () => {}); // the node closes most of them
  return new Promise((resolve) => socket.once('connect', () => resolve(socket)));
}

t.test('half-open CONNECTs of 1 MB each: the node holds at most max_connecting_bytes of them', async (t) => {
  const node = await startNode(t);
  const count = LONG ? 500 : 200;
  const partial = partialConnect(1_000_000);
  /** `n` connections send their partial CONNECT and hang; closed after holdMs. */
  const round = async (n: number, holdMs: number, probe: string): Promise<number> => {
    const sockets: Socket[] = [];
    for (let i = 0; i < n; i++) {
      const s = await open(t, node.mqttPort);
      s.write(partial);
      sockets.push(s);
    }
    const raw = await rawConnect(t, node.mqttPort);
    t.ok((await connackMs(raw, probe)) < CONNACK_MS, 'a fresh client gets its CONNACK while they hang');
    await sleep(holdMs);
    const held = await metric(node.mgmtPort, 'tidemq_connecting_bytes');
    for (const s of sockets) s.destroy();
    return held;
  };
  // The runtime (malloc arenas, V8) sized by as many as the bound holds, then the flood measured:
  // memory a fresh node needs for the bound's worth is not growth the bound should have stopped.
  await round(40, 500, 'probe-warm-up');
  await sleep(500);
  const rss = sampleRss(t, node.pid);
  // Held under the CONNECT deadline (mqtt.idle_timeout, 15 s), which would close them all.
  const held = await round(count, LONG ? 12_000 : 2_000, 'probe-during');
  rss.stop();
  t.ok(held <= 32 * MiB, `bytes held before CONNACK: ${held} (max_connecting_bytes 32 MiB)`);
  t.ok((await metric(node.mgmtPort, 'tidemq_limit_hits_total', 'limit="connecting_bytes"')) > 0, 'connections past the total were closed (counted)');
  t.ok(rss.maxGrowth < 32 * 1024 + RUNTIME_SLACK_KB, `RSS grew by ${rss.maxGrowth} kB (bound ${32 * 1024 + RUNTIME_SLACK_KB} kB)`);
  const after = await rawConnect(t, node.mqttPort);
  t.ok((await connackMs(after, 'probe-after')) < CONNACK_MS, 'and after');
  const until = Date.now() + 5000;
  while ((await metric(node.mgmtPort, 'tidemq_connecting_bytes')) > 0 && Date.now() < until) await sleep(50);
  t.equal(await metric(node.mgmtPort, 'tidemq_connecting_bytes'), 0, 'released as the connections closed');
});

/**
 * 16 clients pipeline 8 (long: 64) packets of 1 MB behind a CONNECT whose password check runs;
 * with `proxy`, behind a PROXY header too (the header's early bytes must not restart reading).
 */
async function pipelined(t: Parameters<typeof rawConnect>[0], proxy: boolean): Promise<void> {
  const conf = configFile(t, { auth: { allow_anonymous: false, password_file: '@DIR@/passwd' }, listeners: { proxy_protocol: proxy } });
  // Verified credentials are cached: the warm-up round uses its own, so the measured round's
  // checks are all still pending while its packets arrive.
  await tidemqPasswd(join(conf, '..', 'passwd'), 'u', 'pw');
  await tidemqPasswd(join(conf, '..', 'passwd'), 'warm', 'pw');
  const node = await startNode(t, { args: ['--config', conf] });
  const conns = 16;
  const perConn = LONG ? 64 : 8;
  const publish = bytes({ cmd: 'publish', topic: 'pipe/x', payload: Buffer.alloc(MiB - 64, 0x62), qos: 0, retain: false, dup: false });
  const header = proxy ? [Buffer.from('PROXY TCP4 203.0.113.9 127.0.0.1 51000 1883\r\n')] : [];
  const burstOf = (username: string): Buffer =>
    Buffer.concat([...header, connectBytes('', 4, { username, password: Buffer.from('pw') }), ...Array.from({ length: perConn }, () => publish)]);
  /**
   * 16 clients send CONNECT and the publishes, `pipelined` in one burst or after their CONNACK;
   * resolves when the node has read all of it.
   */
  const round = async (n: number, pipelined: boolean): Promise<void> => {
    const burst = burstOf(pipelined ? 'u' : 'warm');
    const raws = await Promise.all(Array.from({ length: conns }, () => rawConnect(t, node.mqttPort)));
    for (const r of raws) r.send(pipelined ? burst : burst.subarray(0, burst.length - perConn * publish.length));
    const connacks = await Promise.all(raws.map(async (r) => (await readPacket(r, 4, 15_000))?.cmd));
    t.same(connacks, Array(conns).fill('connack'), 'every client gets its CONNACK');
    if (!pipelined) for (const r of raws) r.send(burst.subarray(burst.length - perConn * publish.length));
    const deadline = Date.now() + 20_000;
    while ((await metric(node.mgmtPort, 'tidemq_packets_received_total', 'type="publish"')) < n * conns * perConn && Date.now() < deadline) await sleep(100);
    t.equal(await metric(node.mgmtPort, 'tidemq_packets_received_total', 'type="publish"'), n * conns * perConn, 'and every packet behind it is read once it is connected');
    for (const r of raws) r.socket.destroy();
  };
  // The same bytes sent after CONNACK size the runtime for reading them; then pipelined, measured.
  await round(1, false);
  await sleep(500);
  const rss = sampleRss(t, node.pid);
  await round(2, true);
  rss.stop();
  // Per connection: the rest of the chunk being read when it paused (max_pending_bytes) and one
  // packet being assembled (max_packet_size).
  const boundKb = (conns * 2 * MiB) / 1024 + RUNTIME_SLACK_KB;
  t.ok(rss.maxGrowth < boundKb, `RSS grew by ${rss.maxGrowth} kB (bound ${boundKb} kB)`);
  const probe = await rawConnect(t, node.mqttPort);
  probe.send(Buffer.concat([...header, connectBytes('probe', 4, { username: 'u', password: Buffer.from('pw') })]));
  t.match(await readPacket(probe, 4, CONNACK_MS), { cmd: 'connack', returnCode: 0 }, 'a fresh client after it');
}

t.test('packets pipelined behind a CONNECT while its password check runs: reading pauses', (t) => pipelined(t, false));
t.test('the same behind a PROXY header', (t) => pipelined(t, true));
