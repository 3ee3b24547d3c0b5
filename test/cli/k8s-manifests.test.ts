// `tidemq k8s manifests` (SPEC 12): the YAML parses (the `yaml` package, an independent parser),
// the objects fit together (selectors, Service names, volume, Secret), the pods' environment is a
// configuration `tidemq start` accepts (dns discovery), the grace period follows the rates, and the
// probe and hook commands are run for real: the preStop drain empties a real node and turns its
// readiness path 503, the postStart undrain makes it serve again. Bad flags exit 2.
import { join } from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import YAML from 'yaml';
import { checkCookie } from '../../src/cluster/cluster.js';
import { loadConfig } from '../../src/config/load.js';
import { toYaml } from '../../src/cli/yaml.js';
import { startCluster, waitFor } from '../cluster/support.js';
import { repoRoot } from '../helpers/build.js';
import { ensureBuilt } from '../helpers/node-process.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { run } from '../helpers/process.js';

// The parts of the parsed objects the assertions read (the YAML is checked against these shapes).
type Labels = Record<string, string>;
interface Meta { name: string; namespace?: string; labels: Labels }
interface EnvVar { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } } }
interface Port { name: string; port: number; targetPort: string }
interface Container {
  image: string;
  command: string[];
  env: EnvVar[];
  ports: Array<{ name: string; containerPort: number }>;
  readinessProbe: { httpGet: { path: string; port: string }; failureThreshold: number };
  lifecycle: { preStop: { exec: { command: string[] } }; postStart: { exec: { command: string[] } } };
  volumeMounts: Array<{ name: string; mountPath: string }>;
}
interface Doc { apiVersion: string; kind: string; metadata: Meta }
interface ServiceDoc extends Doc { spec: { type?: string; clusterIP?: string; publishNotReadyAddresses?: boolean; selector: Labels; ports: Port[] } }
interface StatefulSetDoc extends Doc {
  spec: {
    serviceName: string;
    replicas: number;
    selector: { matchLabels: Labels };
    template: { metadata: { labels: Labels }; spec: { terminationGracePeriodSeconds: number; containers: [Container] } };
    volumeClaimTemplates: [{ metadata: { name: string }; spec: { resources: { requests: { storage: string } } } }];
  };
}
interface PdbDoc extends Doc { spec: { maxUnavailable: number; selector: { matchLabels: Labels } } }
interface SecretDoc extends Doc { stringData: { cookie: string; 'api-password': string } }

const TIDEMQ = join(repoRoot, 'bin', 'tidemq');
const tidemq = (args: string[], env: Record<string, string> = {}, timeoutMs = 20_000) => run(process.execPath, [TIDEMQ, ...args], { timeoutMs, env: { ...process.env, ...env } as Record<string, string> });

async function generate(args: string[]): Promise<Doc[]> {
  const r = await tidemq(['k8s', 'manifests', ...args]);
  if (r.code !== 0) throw new Error(`k8s manifests exited ${r.code}: ${r.stderr}`);
  const docs = YAML.parseAllDocuments(r.stdout);
  for (const d of docs) if (d.errors.length > 0) throw new Error(`YAML error: ${d.errors[0]?.message}`);
  return docs.map((d) => d.toJSON() as Doc);
}

/** The container's environment as the kubelet builds it: field and secret references resolved, `$(VAR)` expanded in order. */
function podEnv(container: Container, fields: Record<string, string>, secrets: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env) {
    let v: string;
    if (e.value !== undefined) v = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string) => env[name] ?? m);
    else if (e.valueFrom?.fieldRef !== undefined) v = fields[e.valueFrom.fieldRef.fieldPath] as string;
    else v = secrets[e.valueFrom?.secretKeyRef?.key ?? ''] as string;
    env[e.name] = v;
  }
  return env;
}

t.before(ensureBuilt);

t.test('the emitter: what it writes, a YAML parser reads back the same', async (t) => {
  const docs = [
    { a: 1, b: 'on', c: 'yes', d: '1e3', e: '', f: null, g: true, 'x y': [1, { k: ['a', { q: false }] }, [], {}], h: {}, i: [[1, 2], [3]], j: 'a "quoted": line\nnext' },
    { k: [{ l: [{ m: 1 }] }] },
  ];
  const back = YAML.parseAllDocuments(toYaml(docs)).map((d) => d.toJSON() as unknown);
  t.same(back, docs);
});

t.test('the objects, their fields, the environment tidemq start accepts', async (t) => {
  const docs = await generate(['--image', 'registry.example.com/tidemq:0.2.0', '--replicas', '5', '--namespace', 'mq', '--expected-connections', '3000', '--expected-sessions', '2000', '--conn-evict-rate', '100', '--sess-evict-rate', '200', '--wait-takeover', '20', '--wait-health-check', '10', '--storage', '5Gi', '--service-type', 'LoadBalancer']);
  t.same(docs.map((d) => `${d.apiVersion} ${d.kind} ${d.metadata.name}`), ['v1 Service tidemq-headless', 'v1 Service tidemq', 'apps/v1 StatefulSet tidemq', 'policy/v1 PodDisruptionBudget tidemq']);
  const [headless, client, sts, pdb] = docs as [ServiceDoc, ServiceDoc, StatefulSetDoc, PdbDoc];
  for (const d of docs) t.equal(d.metadata.namespace, 'mq');
  const labels = sts.spec.template.metadata.labels;
  t.same(sts.spec.selector.matchLabels, labels, 'the StatefulSet selects its pods');
  t.same(headless.spec.selector, labels);
  t.same(client.spec.selector, labels);
  t.same(pdb.spec.selector.matchLabels, labels);
  t.equal(headless.spec.clusterIP, 'None', 'headless');
  t.equal(headless.spec.publishNotReadyAddresses, true, 'pods find each other before they are ready');
  t.equal(sts.spec.serviceName, 'tidemq-headless');
  t.equal(sts.spec.replicas, 5);
  t.equal(client.spec.type, 'LoadBalancer');
  t.same(client.spec.ports.map((p) => [p.name, p.port]), [['mqtt', 1883], ['ws', 8083]]);
  t.same(pdb.spec, { maxUnavailable: 1, selector: { matchLabels: labels } }, 'one pod disrupted at a time');

  const pod = sts.spec.template.spec;
  const c = pod.containers[0];
  t.equal(c.image, 'registry.example.com/tidemq:0.2.0');
  t.same(c.command, ['tidemq', 'start']);
  const portNames = new Set(c.ports.map((p) => p.name));
  for (const p of [...headless.spec.ports, ...client.spec.ports]) t.ok(portNames.has(p.targetPort), `Service port ${p.name} targets a container port`);
  t.same(c.readinessProbe.httpGet, { path: '/api/v4/load_rebalance/availability_check', port: 'mgmt' }, 'readiness is the availability check');
  t.equal(c.readinessProbe.failureThreshold, 1, 'a draining pod leaves the Endpoints at the first 503');
  // Drain: 10 + 3000/100 + 20 + 2000/200 + 30 slack = 100 s; the grace period adds the node's own 15 s stop.
  t.equal(pod.terminationGracePeriodSeconds, 115, 'grace period from the rates and the expected counts');
  const drain = c.lifecycle.preStop.exec.command;
  t.same(drain.slice(0, 6), ['tidemq', 'ctl', '--api', 'http://127.0.0.1:8081', 'node', 'drain']);
  t.equal(drain[drain.indexOf('--timeout') + 1], '100', 'the drain gives up before the kubelet kills the pod');
  t.equal(drain[drain.indexOf('--conn-evict-rate') + 1], '100');
  t.same(sts.spec.volumeClaimTemplates[0].metadata.name, 'data');
  t.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, '5Gi');
  t.same(c.volumeMounts, [{ name: 'data', mountPath: '/var/lib/tidemq' }]);

  const env = podEnv(c, { 'metadata.name': 'tidemq-3', 'metadata.namespace': 'mq' }, { cookie: 'k8s-test-cookie', 'api-password': 'k8s-test-password' });
  t.equal(env.TIDEMQ_NODE__COOKIE, 'k8s-test-cookie', 'the cookie comes from the Secret');
  t.match(c.env.find((e) => e.name === 'TIDEMQ_NODE__COOKIE'), { valueFrom: { secretKeyRef: { name: 'tidemq-secret', key: 'cookie' } } });
  const config = loadConfig({}, env);
  t.equal(config.node.name, 'tidemq@tidemq-3.tidemq-headless.mq.svc.cluster.local', 'a stable node name: the pod DNS name');
  t.equal(config.cluster.discovery, 'dns');
  t.equal(config.cluster.dns_name, 'tidemq-headless.mq.svc.cluster.local', 'dns discovery of the headless Service');
  t.equal(config.cluster.port, 4370);
  t.equal(config.node.data_dir, '/var/lib/tidemq', 'data on the volume');
  t.equal(config.management.bind, '0.0.0.0');
  t.equal(config.management.password, 'k8s-test-password', 'a non-default API password, so the API may bind 0.0.0.0');
  t.doesNotThrow(() => checkCookie(config), 'a reachable node with a cookie of its own: accepted at start');
});

t.test('--with-secret prints a Secret with fresh random values', async (t) => {
  const [a, b] = [await generate(['--image', 'i', '--with-secret', '--name', 'mq2']), await generate(['--image', 'i', '--with-secret', '--name', 'mq2'])];
  const secret = a[0] as SecretDoc;
  t.equal(secret.kind, 'Secret');
  t.equal(secret.metadata.name, 'mq2-secret');
  t.match(secret.stringData.cookie, /^[0-9a-f]{64}$/);
  t.not(secret.stringData.cookie, (b[0] as SecretDoc).stringData.cookie, 'a new cookie each time');
  const sts = a.find((d) => d.kind === 'StatefulSet') as StatefulSetDoc;
  t.ok(sts.spec.template.spec.containers[0].env.every((e) => e.valueFrom?.secretKeyRef === undefined || e.valueFrom.secretKeyRef.name === 'mq2-secret'));
});

t.test('bad flags: exit 2 with the flag named, nothing printed', async (t) => {
  for (const [args, message] of [
    [[], /--image is needed/],
    [['--image', 'i', '--replicas', '0'], /invalid --replicas value: 0/],
    [['--image', 'i', '--replicas', 'three'], /invalid --replicas value: three/],
    [['--image', 'i', '--service-type', 'Ingress'], /invalid --service-type value: Ingress/],
    [['--image', 'i', '--conn-evict-rate', '0'], /invalid --conn-evict-rate value: 0/],
    [['--image', 'i', '--name', 'Tidemq_1'], /invalid --name value/],
    [['--image', 'i', '--storage', 'lots'], /invalid --storage value/],
    [['--image', 'i', '--bogus'], /Unknown argument: bogus/],
  ] as Array<[string[], RegExp]>) {
    const r = await tidemq(['k8s', 'manifests', ...args]);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, message);
    t.equal(r.stdout, '', 'no YAML');
  }
});

t.test('the hooks and the probe, run against real nodes', async (t) => {
  const docs = await generate(['--image', 'i', '--expected-connections', '100', '--conn-evict-rate', '50', '--wait-takeover', '1', '--wait-health-check', '0']);
  const c = (docs.find((d) => d.kind === 'StatefulSet') as StatefulSetDoc).spec.template.spec.containers[0];
  const [n1, n2] = (await startCluster(t, 2)) as [NodeProcess, NodeProcess];
  const onNode = (cmd: string[], node: NodeProcess): string[] => {
    t.equal(cmd[0], 'tidemq');
    return cmd.slice(1).map((a) => a.replace('http://127.0.0.1:8081', `http://127.0.0.1:${node.mgmtPort}`));
  };
  const probe = async (node: NodeProcess): Promise<number> => (await fetch(`http://127.0.0.1:${node.mgmtPort}${c.readinessProbe.httpGet.path}`)).status;
  t.equal(await probe(n1), 200, 'ready');
  const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: `k8s-${i}`, reconnectPeriod: 0 })));
  t.teardown(() => Promise.all(clients.map((x) => x.endAsync(true))));
  const persistent = await mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: 'k8s-p', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 }, reconnectPeriod: 0 });
  await persistent.subscribeAsync('k8s/#', { qos: 1 });
  await persistent.endAsync();

  // The hook runs with the pod's credentials (TIDEMQ_API_PASSWORD), here the test node's.
  const drain = await tidemq(onNode(c.lifecycle.preStop.exec.command, n1), { TIDEMQ_API_PASSWORD: 'public' }, 30_000);
  t.equal(drain.code, 0, `preStop drain: ${drain.stdout}${drain.stderr}`);
  t.match(drain.stdout, /drained: no connection and no session left/);
  t.equal(await probe(n1), 503, 'a drained pod is not ready (it leaves the Endpoints)');
  await waitFor('the session on node 2', async () => (await fetch(`http://127.0.0.1:${n2.mgmtPort}/api/v5/clients/k8s-p`, { headers: { authorization: `Basic ${Buffer.from('admin:public').toString('base64')}` } })).status === 200, 5000);

  const undrain = await tidemq(onNode(c.lifecycle.postStart.exec.command, n1), { TIDEMQ_API_PASSWORD: 'public' });
  t.equal(undrain.code, 0, undrain.stderr);
  t.match(undrain.stdout, /serves again: evacuation stopped/);
  t.equal(await probe(n1), 200, 'ready again');
  const again = await tidemq(onNode(c.lifecycle.postStart.exec.command, n1), { TIDEMQ_API_PASSWORD: 'public' });
  t.match(again.stdout, /serves: no evacuation/, 'undrain on a serving node changes nothing');

  const nobody = await freePort();
  const late = await tidemq(['ctl', '--api', `http://127.0.0.1:${nobody}`, 'node', 'undrain', '--timeout', '1']);
  t.equal(late.code, 1, 'undrain gives up when the API never answers');
  t.match(late.stderr, /cannot reach/);
});
