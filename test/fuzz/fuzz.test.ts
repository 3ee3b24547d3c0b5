// Seeded mutation fuzzing against real node processes, each case on a fresh connection: MQTT
// 3.1/3.1.1/5.0 packets to the MQTT port of one node, and a stranger's frames to the cluster port
// of a two-node cluster. Afterwards the nodes are up, logged no error for what clients sent, serve
// a normal publish/subscribe, and the cluster kept its members.
//
// CI runs a few thousand cases; long runs: `npm run fuzz -- --cases N --seed S [--target mqtt|cluster]`
// (N cases per target). A failure names the seed; the same seed replays the same cases.

import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { connectClient } from '../helpers/clients.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';
import { seededRandom } from '../helpers/random.js';
import { countLines, linksUp, sleep, startCluster, waitFor } from '../cluster/support.js';
import { clusterCase, mqttCase, type FuzzCase } from './mutations.js';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const seed = Number(flag('seed') ?? process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const cases = flag('cases');
const target = flag('target') ?? 'both';
const MQTT_CASES = cases === undefined ? 4000 : Number(cases);
const CLUSTER_CASES = cases === undefined ? 2000 : Number(cases);
/** Connections in flight at once. */
const CONCURRENCY = 24;
/** How long a case may stay open before the test closes it. */
const CASE_MS = 1000;
if (!Number.isInteger(seed) || !Number.isInteger(MQTT_CASES) || MQTT_CASES < 1 || !['mqtt', 'cluster', 'both'].includes(target)) {
  throw new Error('usage: npm run fuzz -- [--cases N] [--seed S] [--target mqtt|cluster|both]');
}
if (cases !== undefined) t.setTimeout(Math.max(180_000, MQTT_CASES * 100));

/**
 * Writes one case on a fresh connection, then half-closes and waits for the node's close
 * (bounded). Returns whether the node answered anything (a CONNACK, a challenge).
 */
async function runCase(port: number, c: FuzzCase): Promise<boolean> {
  const socket = connect({ host: '127.0.0.1', port });
  let answered = false;
  socket.on('error', () => {});
  // Read what the node answers, so it is never blocked on us.
  socket.on('data', () => (answered = true));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const timer = setTimeout(() => socket.destroy(), CASE_MS);
  try {
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    for (const chunk of c.chunks) {
      if (socket.destroyed) break;
      socket.write(chunk);
      if (c.gapMs > 0) await sleep(c.gapMs);
    }
    socket.end();
    await closed;
  } catch {
    // refused or reset: the node's side of the case is what is checked afterwards
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
  return answered;
}

/** Runs `count` cases from `make`, CONCURRENCY at a time; returns how many the node answered. */
async function fuzz(port: number, count: number, make: (i: number) => FuzzCase): Promise<number> {
  let next = 0;
  let answered = 0;
  const worker = async (): Promise<void> => {
    while (next < count) if (await runCase(port, make(next++))) answered++;
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return answered;
}

/** The node is alive, logged no error, and a subscriber gets a publish through it. */
async function assertServes(t: Test, node: NodeProcess, subNode: NodeProcess = node): Promise<void> {
  t.doesNotThrow(() => process.kill(node.pid, 0), `${node.name} is still running`);
  const output = node.output();
  // The helper keeps the last MiB of output: the check below must have seen all of it.
  t.ok(output.length < 1 << 20, `the whole log is kept (${output.length} characters)`);
  const errors = output.split('\n').filter((l) => /"level":(50|60)/.test(l));
  t.same(errors.slice(0, 5), [], `${node.name} logged no error (seed ${seed})`);
  const sub = await connectClient(t, subNode.mqttPort, { clientId: `after-fuzz-sub-${node.pid}` });
  const got: string[] = [];
  sub.on('message', (_topic, payload) => got.push(payload.toString()));
  await sub.subscribeAsync('after/fuzz', { qos: 1 });
  const pub = await connectClient(t, node.mqttPort, { clientId: `after-fuzz-pub-${node.pid}` });
  await waitFor('a message after the fuzzing', async () => {
    await pub.publishAsync('after/fuzz', 'still serving', { qos: 1 });
    return got.includes('still serving');
  });
  t.pass(`${node.name} serves publish/subscribe after the fuzzing`);
}

t.test(`MQTT packets, ${MQTT_CASES} mutated cases (seed ${seed})`, { skip: target === 'cluster' }, async (t) => {
  const node = await startNode(t);
  const rnd = seededRandom(seed);
  const started = Date.now();
  const answered = await fuzz(node.mqttPort, MQTT_CASES, (i) => mqttCase(rnd, i));
  t.comment(`${MQTT_CASES} MQTT cases in ${Date.now() - started} ms, ${answered} answered`);
  t.ok(answered > MQTT_CASES / 4, 'a good share of the cases got past CONNECT (the packets behind it were exercised)');
  await assertServes(t, node);
});

t.test(`cluster port before authentication, ${CLUSTER_CASES} mutated cases (seed ${seed})`, { skip: target === 'mqtt' }, async (t) => {
  const [n1, n2] = await startCluster(t, 2);
  if (n1 === undefined || n2 === undefined) throw new Error('no cluster');
  const rnd = seededRandom(seed ^ 0x5eed);
  const members = [n1.name, n2.name];
  const started = Date.now();
  const answered = await fuzz(n1.clusterPort, CLUSTER_CASES, () => clusterCase(rnd, members));
  t.comment(`${CLUSTER_CASES} cluster cases in ${Date.now() - started} ms, ${answered} answered`);
  for (const node of [n1, n2]) {
    // A link that went down says why in its log line: shown, so that a failure can be chased.
    for (const line of node.output().split('\n').filter((l) => l.includes('"msg":"cluster node down"'))) t.comment(`${node.name}: ${line}`);
    t.equal(countLines(node, /"msg":"cluster member removed"/), 0, `${node.name} removed no member`);
    t.equal(countLines(node, /"msg":"cluster node down"/), 0, `${node.name} saw no link go down`);
    t.equal(linksUp(node), 1, `${node.name} is still linked`);
  }
  await assertServes(t, n1, n2);
  await assertServes(t, n2, n1);
});
