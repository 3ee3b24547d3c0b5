// The benchmark scenarios: the same nbench run against every broker.
import type { BrokerId, RunningBroker } from './brokers.js';
import { MEMORY_SCENARIOS } from './memory-scenarios.js';
import { num, runNbench, type Result } from './nbench.js';
import { establishedOnPort, rssBytes, sleep, treeCpuSeconds } from './proc.js';

export interface Sample {
  value: number;
  valid: boolean; // every connection/subscription came up
  note: string;
  brokerCpuPct: number;
  loadCpuPct: number;
  extra: Record<string, number>;
  result: Result;
}

export interface RunContext {
  nbench: string;
  /** Load generator processes for the host scenario. */
  loaders: number;
  broker: RunningBroker;
  quick: boolean;
  tag: string; // unique per run: client id prefix and topic
}

export interface Scenario {
  id: string;
  title: string;
  unit: string;
  better: 'higher' | 'lower';
  pubsub: boolean; // needs a real broker (routing)
  brokers?: readonly BrokerId[]; // only these (default: all that qualify)
  /** tidemq runs as `start --nodes hostNodes` on one port for this scenario. */
  host?: boolean;
  run(ctx: RunContext): Promise<Sample>;
}

/** Runs nbench while measuring the broker's CPU share over the same wall time. */
async function measured(ctx: RunContext, args: string[], onLine?: Parameters<typeof runNbench>[2]['onLine']) {
  const cpu0 = treeCpuSeconds(ctx.broker.pid);
  const t0 = Date.now();
  const run = await runNbench(ctx.nbench, [...args, '--port', String(ctx.broker.port)], {
    timeoutMs: 300000,
    ...(onLine ? { onLine } : {}),
  });
  const wall = (Date.now() - t0) / 1000;
  const brokerCpuPct = ((treeCpuSeconds(ctx.broker.pid) - cpu0) / wall) * 100;
  const r = run.result;
  const loadCpuPct = (num(r, 'cpu_s') / Math.max(num(r, 'elapsed_s'), 1e-3)) * 100;
  return { r, brokerCpuPct, loadCpuPct };
}

function connOutcome(r: Result, n: number): { valid: boolean; note: string } {
  const fails = Object.entries(r).filter(([k]) => k.startsWith('fail_') || k.startsWith('connack_rc_'));
  const valid = num(r, 'established') === n && r.complete === '1';
  return { valid, note: valid ? '' : `established ${r.established ?? '?'}/${n} ${fails.map(([k, v]) => `${k}=${v}`).join(' ')}` };
}

function connScenario(id: string, title: string, metric: 'conn_per_s' | 'connack_p99_ms', full: string[], quick: string[]): Scenario {
  return {
    id,
    title,
    unit: metric === 'conn_per_s' ? 'conn/s' : 'ms',
    better: metric === 'conn_per_s' ? 'higher' : 'lower',
    pubsub: false,
    async run(ctx) {
      const args = ctx.quick ? quick : full;
      const n = Number(args[args.indexOf('-n') + 1]);
      const { r, brokerCpuPct, loadCpuPct } = await measured(ctx, ['conn', ...args, '--prefix', ctx.tag]);
      return { value: num(r, metric), ...connOutcome(r, n), brokerCpuPct, loadCpuPct, extra: {}, result: r };
    },
  };
}

function pubsubScenario(id: string, title: string, full: string[], quick: string[]): Scenario {
  return {
    id,
    title,
    unit: 'msg/s',
    better: 'higher',
    pubsub: true,
    async run(ctx) {
      const args = ['pubsub', ...(ctx.quick ? quick : full), '--prefix', ctx.tag, '--topic', `nbench/${ctx.tag}`];
      const { r, brokerCpuPct, loadCpuPct } = await measured(ctx, args);
      const valid = r.complete === '1' && num(r, 'failed') === 0 && num(r, 'dropped') === 0;
      const note = valid ? (num(r, 'lost') > 0 ? `lost ${r.lost ?? ''}` : '') : `setup failed: ${['failed', 'connack_rc', 'suback_failed', 'dropped'].map((k) => `${k}=${r[k] ?? '-'}`).join(' ')}`;
      return {
        value: num(r, 'recv_per_s'),
        valid,
        note,
        brokerCpuPct,
        loadCpuPct,
        extra: { lost: num(r, 'lost'), duplicates: num(r, 'duplicates'), latency_p99_ms: num(r, 'latency_p99_ms') },
        result: r,
      };
    },
  };
}

/** RSS right after the burst: the handshakes' garbage is collected, the young generation is not
 *  yet given back. */
const BURST_SETTLE_MS = 2000;
/** Idle: V8 hands its young generation back once allocation stops (its memory reducer runs about
 *  8 s after the last full GC); every broker is read after the same wait. */
const IDLE_MS = 25000;
const IDLE_MS_QUICK = 5000;

const idleRss: Scenario = {
  id: 'idle-rss',
  title: 'RSS per idle connection',
  unit: 'KiB/conn',
  better: 'lower',
  pubsub: false,
  async run(ctx) {
    const n = ctx.quick ? 3000 : 15000;
    const idleMs = ctx.quick ? IDLE_MS_QUICK : IDLE_MS;
    // The same idle before the first reading as before the last: what a server allocated while
    // starting (tidemq's warm-up) is given back by then too, not counted against the connections.
    await sleep(idleMs);
    const before = rssBytes(ctx.broker.pid);
    let burst = Number.NaN;
    let after = Number.NaN;
    let ss = Number.NaN;
    let measureError = '';
    const { r, brokerCpuPct, loadCpuPct } = await measured(
      ctx,
      ['conn', '-n', String(n), '--hold', '120', '--prefix', ctx.tag],
      (line, terminate) => {
        if (!line.startsWith('READY ')) return;
        void sleep(BURST_SETTLE_MS)
          .then(async () => {
            burst = rssBytes(ctx.broker.pid);
            await sleep(idleMs - BURST_SETTLE_MS);
            after = rssBytes(ctx.broker.pid);
            ss = establishedOnPort(ctx.broker.port);
          })
          .catch((err: Error) => {
            measureError = err.message;
          })
          .finally(terminate);
      },
    );
    const established = num(r, 'established');
    const outcome = connOutcome(r, n);
    const note = [outcome.note, measureError, ss !== established ? `ss sees ${ss} established, nbench ${established}` : '']
      .filter((s) => s !== '')
      .join('; ');
    const perConn = (rss: number): number => (rss - before) / established / 1024;
    return {
      value: perConn(after),
      valid: outcome.valid && measureError === '',
      note,
      brokerCpuPct,
      loadCpuPct,
      extra: { burst_kib_per_conn: perConn(burst), rss_before_mib: before / 2 ** 20, rss_burst_mib: burst / 2 ** 20, rss_after_mib: after / 2 ** 20, ss_established: ss },
      result: r,
    };
  },
};

/**
 * One host's cores behind one port: `loaders` nbench processes at once, each with its share of
 * the connections, against tidemq `--nodes N` or one Mosquitto; the rate is all connections over
 * the slowest loader's time.
 */
const hostScenario: Scenario = {
  id: 'host',
  title: 'One host, one port: tidemq --nodes N vs one Mosquitto, parallel load generators',
  unit: 'conn/s',
  better: 'higher',
  pubsub: false,
  brokers: ['tidemq', 'mosquitto'],
  host: true,
  async run(ctx) {
    const total = ctx.quick ? 4000 : 15000;
    const each = Math.floor(total / ctx.loaders);
    const cpu0 = treeCpuSeconds(ctx.broker.pid);
    const t0 = Date.now();
    const runs = await Promise.all(
      Array.from({ length: ctx.loaders }, (_, i) =>
        runNbench(ctx.nbench, ['conn', '-n', String(each), '--inflight', '64', '--prefix', `${ctx.tag}l${i}`, '--port', String(ctx.broker.port)], { timeoutMs: 300000 }),
      ),
    );
    const wall = (Date.now() - t0) / 1000;
    const established = runs.reduce((a, r) => a + num(r.result, 'established'), 0);
    const slowest = Math.max(...runs.map((r) => num(r.result, 'elapsed_s')));
    const loadCpu = runs.reduce((a, r) => a + num(r.result, 'cpu_s'), 0);
    const valid = established === each * ctx.loaders && runs.every((r) => r.result.complete === '1');
    return {
      value: established / Math.max(slowest, 1e-3),
      valid,
      note: valid ? '' : `established ${established}/${each * ctx.loaders}`,
      brokerCpuPct: ((treeCpuSeconds(ctx.broker.pid) - cpu0) / wall) * 100,
      loadCpuPct: (loadCpu / Math.max(slowest, 1e-3)) * 100,
      extra: { loaders: ctx.loaders },
      result: runs[0]?.result ?? {},
    };
  },
};

export const SCENARIOS: readonly Scenario[] = [
  connScenario('connect-rate', 'Connect rate, 15000 conns as fast as possible, 64 in flight', 'conn_per_s', ['-n', '15000', '--inflight', '64'], ['-n', '2000', '--inflight', '64']),
  connScenario('connack-p99', 'CONNACK p99, open loop at 5000 conn/s', 'connack_p99_ms', ['-n', '15000', '--rate', '5000'], ['-n', '2000', '--rate', '5000']),
  idleRss,
  pubsubScenario('fanout', 'Fan-out 1 -> 1000, QoS 0, 64 B', ['--subs', '1000', '--pubs', '1', '--duration', '5'], ['--subs', '200', '--pubs', '1', '--duration', '2']),
  pubsubScenario('fanin', 'Fan-in 100 -> 1, QoS 0, 64 B', ['--subs', '1', '--pubs', '100', '--duration', '5'], ['--subs', '1', '--pubs', '100', '--duration', '2']),
  connScenario('persistent-rate', 'Persistent-session connect rate (3.1.1, clean session 0)', 'conn_per_s', ['-n', '10000', '--persistent'], ['-n', '2000', '--persistent']),
  ...MEMORY_SCENARIOS,
  hostScenario,
];
