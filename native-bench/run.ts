// npm run bench: builds nothing itself (the Makefile does), starts each server alone on
// loopback, runs every scenario against each, repetitions interleaved, and prints medians
// with tidemq's ratios. Results also go to bench/results/<stamp>.json and .svg.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BROKER_IDS, isReference, mosquittoVersion, startBroker, unavailable, type BrokerId, type Paths } from './lib/brokers.js';
import { stopAllOnExit } from './lib/proc.js';
import { cpuTable, resultsTable, svgChart, targets, targetsTable, type Samples } from './lib/report.js';
import { SCENARIOS } from './lib/scenarios.js';

const HELP = `usage: npm run bench -- [--quick] [--reps N] [--brokers a,b] [--scenarios x,y] [--out DIR]
  --quick       fewer connections, shorter runs, 1 repetition (checks that everything works)
  --reps N      repetitions, interleaved across brokers (default 3; 1 with --quick)
  --brokers     from: ${BROKER_IDS.join(',')} (default all)
  --scenarios   from: ${SCENARIOS.map((s) => s.id).join(',')} (default all)
  --out DIR     where the JSON and SVG go (default bench/results)
  --host-nodes N  host scenario: tidemq runs as start --nodes N (default: the number of cores)
  --loaders P   host scenario: load generator processes at once (default: N, at most 8)`;

function list<T extends string>(value: string | undefined, all: readonly T[], what: string): T[] {
  if (!value) return [...all];
  const picked = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const p of picked) if (!all.includes(p as T)) throw new Error(`unknown ${what} '${p}' (known: ${all.join(', ')})`);
  return picked as T[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      brokers: { type: 'string' },
      scenarios: { type: 'string' },
      out: { type: 'string' },
      'host-nodes': { type: 'string' },
      loaders: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const build = dirname(fileURLToPath(import.meta.url));
  const paths: Paths = { root: resolve(build, '..', '..'), build };
  const nbench = join(build, 'nbench');
  if (!existsSync(nbench)) throw new Error(`${nbench} is missing: run make -C native-bench first`);
  const quick = values.quick ?? false;
  const reps = Number(values.reps ?? (quick ? 1 : 3));
  if (!Number.isInteger(reps) || reps < 1 || reps > 20) throw new Error('--reps must be an integer in [1, 20]');
  const hostNodes = Number(values['host-nodes'] ?? availableParallelism());
  if (!Number.isInteger(hostNodes) || hostNodes < 1 || hostNodes > 64) throw new Error('--host-nodes must be an integer in [1, 64]');
  const loaders = Number(values.loaders ?? Math.min(hostNodes, 8));
  if (!Number.isInteger(loaders) || loaders < 1 || loaders > 64) throw new Error('--loaders must be an integer in [1, 64]');
  const scenarioIds = list(values.scenarios, SCENARIOS.map((s) => s.id), 'scenario');
  const scenarios = SCENARIOS.filter((s) => scenarioIds.includes(s.id));
  const wanted = list(values.brokers, BROKER_IDS, 'broker');
  const brokers: BrokerId[] = [];
  const skipped: Record<string, string> = {};
  for (const b of wanted) {
    const why = unavailable(b, paths);
    if (why) {
      skipped[b] = why;
      console.log(`SKIP ${b}: ${why}`);
    } else {
      brokers.push(b);
    }
  }

  // other work on this machine skews every number: say so rather than print it as fact
  const load = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  if (load > cpus().length * 0.5) console.log(`WARNING: load average ${load} on ${cpus().length} cores before the run; results are unreliable`);
  stopAllOnExit();
  const samples: Samples = new Map(scenarios.map((s) => [s.id, new Map()]));
  const errors: string[] = [];
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (let rep = 0; rep < reps; rep++) {
    for (const sc of scenarios) {
      // rotate the broker order each repetition so none always runs first or last
      const order = brokers.map((_, i) => brokers[(i + rep) % brokers.length] as BrokerId);
      for (const b of order) {
        if (sc.pubsub && isReference(b)) continue;
        if (sc.brokers !== undefined && !sc.brokers.includes(b)) continue;
        if (skipped[b]) continue;
        let running;
        try {
          running = await startBroker(b, paths, sc.host === true ? hostNodes : 0);
        } catch (err) {
          const msg = (err as Error).message;
          errors.push(msg);
          console.log(`SKIP ${b}: ${msg}`);
          skipped[b] = msg; // a broker that does not start is left out of the later runs
          continue;
        }
        try {
          const s = await sc.run({ nbench, loaders, broker: running, quick, tag: `nb${rep}${sc.id.replace(/-/g, '')}${b.replace(/-/g, '')}${process.pid}` });
          samples.get(sc.id)!.set(b, [...(samples.get(sc.id)!.get(b) ?? []), s]);
          console.log(`rep ${rep + 1}/${reps} ${sc.id.padEnd(15)} ${b.padEnd(9)} ${s.value.toFixed(2)} ${sc.unit}` +
            ` cpu broker ${s.brokerCpuPct.toFixed(0)}% loadgen ${s.loadCpuPct.toFixed(0)}%${s.valid ? '' : ' INVALID'}${s.note ? ` (${s.note})` : ''}` +
            Object.entries(s.extra).map(([k, v]) => ` ${k}=${Number.isInteger(v) ? v : v.toFixed(2)}`).join(''));
        } catch (err) {
          errors.push(`${sc.id} ${b}: ${(err as Error).message}`);
          console.log(`ERROR ${sc.id} ${b}: ${(err as Error).message}`);
        } finally {
          await running.stop();
        }
      }
    }
  }

  const shown = brokers.filter((b) => !skipped[b] || [...samples.values()].some((m) => m.has(b)));
  console.log(`\n## Results (median of ${reps} repetition${reps > 1 ? 's' : ''}${quick ? ', quick mode' : ''})\n`);
  console.log(resultsTable(scenarios, shown, samples));
  console.log('\n' + cpuTable(scenarios, shown, samples));
  const checks = targets(samples);
  console.log('\n' + targetsTable(checks));
  if (skipped.tidemq) console.log(`\ntidemq was not measured: ${skipped.tidemq}`);

  const outDir = values.out ? resolve(values.out) : join(paths.root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const env = {
    node: process.version,
    kernel: release(),
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? '',
    loadavg_before: load,
    mosquitto: brokers.includes('mosquitto') ? mosquittoVersion() : '',
    commit: gitCommit(paths.root),
  };
  const json = {
    stamp,
    quick,
    reps,
    env,
    skipped,
    errors,
    scenarios: scenarios.map((sc) => ({
      id: sc.id,
      title: sc.title,
      unit: sc.unit,
      better: sc.better,
      samples: Object.fromEntries([...(samples.get(sc.id) ?? new Map())].map(([b, s]) => [b, s])),
    })),
    targets: checks,
  };
  const base = join(outDir, `bench-${stamp}`);
  writeFileSync(`${base}.json`, JSON.stringify(json, null, 2));
  writeFileSync(`${base}.svg`, svgChart(scenarios, shown, samples, `tidemq native-bench ${stamp}${quick ? ' (quick)' : ''}`));
  console.log(`\nwrote ${base}.json and ${base}.svg`);
  return errors.length ? 1 : 0;
}

function gitCommit(root: string): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`bench: ${err.message}`);
    process.exit(2);
  },
);
