// The benchmark's memory section: the floods of the memory-bound tests (native-bench/lib/floods.ts)
// against tidemq and Mosquitto with the same queue limits (1000 messages, 64 MiB per client), each
// reporting the broker's largest RSS growth over its RSS before the flood.
import { connect, type Socket } from 'node:net';
import { flood, partialConnect, sampleRss, seqSubscriber, subscribeMany, type Track } from './floods.js';
import { sleep, treeCpuSeconds } from './proc.js';
import type { RunContext, Sample, Scenario } from './scenarios.js';

const MiB = 1024 * 1024;

/** Runs `load` with the broker's RSS sampled; closes every socket the load opened afterwards. */
async function rssGrowth(ctx: RunContext, load: (track: Track) => Promise<{ valid: boolean; note: string; extra: Record<string, number> }>): Promise<Sample> {
  const sockets: Socket[] = [];
  const track: Track = (s) => sockets.push(s);
  await sleep(500);
  const rss = sampleRss(ctx.broker.pid);
  const cpu0 = treeCpuSeconds(ctx.broker.pid);
  const load0 = process.cpuUsage();
  const t0 = Date.now();
  try {
    const out = await load(track);
    rss.stop();
    const wall = (Date.now() - t0) / 1000;
    const used = process.cpuUsage(load0);
    return {
      value: rss.maxGrowth / MiB,
      valid: out.valid,
      note: out.note,
      brokerCpuPct: ((treeCpuSeconds(ctx.broker.pid) - cpu0) / wall) * 100,
      loadCpuPct: ((used.user + used.system) / 1e6 / wall) * 100,
      extra: out.extra,
      result: {},
    };
  } finally {
    rss.stop();
    for (const s of sockets) s.destroy();
  }
}

function memoryScenario(id: string, title: string, load: (ctx: RunContext, track: Track) => Promise<{ valid: boolean; note: string; extra: Record<string, number> }>): Scenario {
  return { id, title, unit: 'MiB RSS growth', better: 'lower', pubsub: true, brokers: ['tidemq', 'mosquitto'], run: (ctx) => rssGrowth(ctx, (track) => load(ctx, track)) };
}

const floodMs = (ctx: RunContext): number => (ctx.quick ? 3000 : 12_000);

export const MEMORY_SCENARIOS: readonly Scenario[] = [
  memoryScenario('mem-offline', 'Memory: offline persistent session, QoS 1 1 KB flood', async (ctx, track) => {
    const sub = await seqSubscriber(track, ctx.broker.port, `${ctx.tag}-sub`, `${ctx.tag}/#`, false);
    sub.socket.end(Buffer.from([0xe0, 0x00]));
    await sub.until(() => sub.isClosed, 'the subscriber to disconnect');
    const r = await flood(track, { port: ctx.broker.port, clientId: `${ctx.tag}-pub`, topic: `${ctx.tag}/a`, size: 1024, qos: 1, durationMs: floodMs(ctx) });
    return { valid: r.acked > 0, note: '', extra: { acked: r.acked } };
  }),
  memoryScenario('mem-slow-sub', 'Memory: subscriber that stops reading, QoS 1 1 KB flood', async (ctx, track) => {
    const sub = await seqSubscriber(track, ctx.broker.port, `${ctx.tag}-sub`, `${ctx.tag}/#`, true);
    sub.socket.pause();
    const r = await flood(track, { port: ctx.broker.port, clientId: `${ctx.tag}-pub`, topic: `${ctx.tag}/a`, size: 1024, qos: 1, durationMs: floodMs(ctx) });
    return { valid: r.acked > 0, note: sub.isClosed ? 'subscriber disconnected' : '', extra: { acked: r.acked } };
  }),
  memoryScenario('mem-half-open', 'Memory: half-open CONNECTs of 1 MB each', async (ctx, track) => {
    const n = ctx.quick ? 200 : 500;
    const partial = partialConnect(1_000_000);
    for (let i = 0; i < n; i++) {
      const s = connect({ host: '127.0.0.1', port: ctx.broker.port });
      track(s);
      s.on('error', () => {});
      s.write(partial);
    }
    await sleep(ctx.quick ? 2000 : 5000);
    return { valid: true, note: '', extra: { connections: n } };
  }),
  memoryScenario('mem-subscriptions', 'Memory: one client with 100 000 subscriptions', async (ctx, track) => {
    const total = ctx.quick ? 20_000 : 100_000;
    const r = await subscribeMany(track, ctx.broker.port, `${ctx.tag}-subs`, total);
    return { valid: r.granted + r.refused === total, note: r.refused > 0 ? `${r.refused} refused` : '', extra: r };
  }),
];
