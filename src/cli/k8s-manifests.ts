// `tidemq k8s manifests --image IMG [...]`: the Kubernetes objects of a tidemq cluster, printed as
// YAML for `kubectl apply -f -` (SPEC 12): a StatefulSet whose pods find each other by `dns`
// discovery of a headless Service, a client Service, readiness on the availability check (a
// draining pod leaves the Endpoints, as the EMQX Operator does), a preStop hook that drains the pod
// (`ctl node drain`) and a postStart hook that lets a drained pod restarted on its volume serve
// again (`ctl node undrain`), a grace period long enough for that drain, a PodDisruptionBudget, the cookie
// and API password from a Secret, and the data dir on a volume claim. A rolling update of the
// StatefulSet then moves each pod's clients and sessions away before the pod stops.
import { randomBytes } from 'node:crypto';
import type { Argv } from 'yargs';
import { EVACUATION_DEFAULTS } from '../rebalance/options.js';
import { UsageError } from './parser.js';
import { toYaml, type YamlValue } from './yaml.js';

const PORTS = { mqtt: 1883, ws: 8083, mgmt: 8081, cluster: 4370 } as const;
const DATA_DIR = '/var/lib/tidemq';
const AVAILABILITY_PATH = '/api/v4/load_rebalance/availability_check';
/** What the grace period keeps beyond the drain: the node's own graceful stop. */
const STOP_MARGIN_S = 15;
/** Readiness is read this often, and one failure takes the pod out of the Endpoints. */
const READINESS_PERIOD_S = 2;

interface ManifestOptions {
  readonly name: string;
  readonly namespace: string | undefined;
  readonly replicas: number;
  readonly image: string;
  /** The tidemq launcher inside the image. */
  readonly bin: string;
  readonly storage: string;
  readonly storageClass: string | undefined;
  readonly serviceType: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  /** Connections and sessions one pod is expected to hold: they size the drain and the grace period. */
  readonly expectedConnections: number;
  readonly expectedSessions: number;
  /** The drain's evacuation options (`ctl node drain` flags). */
  readonly connEvictRate: number;
  readonly sessEvictRate: number;
  readonly waitTakeover: number;
  readonly waitHealthCheck: number;
  /** The Secret with keys `cookie` and `api-password`. */
  readonly secret: string;
  /** Print that Secret too, with fresh random values (first install only: a new cookie splits the cluster). */
  readonly withSecret: boolean;
}

const MANIFEST_DEFAULTS = {
  name: 'tidemq',
  replicas: 3,
  bin: 'tidemq',
  storage: '1Gi',
  serviceType: 'ClusterIP',
  expectedConnections: 10_000,
  connEvictRate: EVACUATION_DEFAULTS.connEvictRate,
  sessEvictRate: EVACUATION_DEFAULTS.sessEvictRate,
  waitTakeover: EVACUATION_DEFAULTS.waitTakeover,
  // Longer than one readiness period and the Endpoints' propagation: new clients stop coming first.
  waitHealthCheck: 10,
} as const;

/** Seconds a pod's drain may take: the evacuation's phases at its rates, plus the usual reconnect slack. */
function drainSeconds(o: ManifestOptions): number {
  return o.waitHealthCheck + Math.ceil(o.expectedConnections / o.connEvictRate) + o.waitTakeover + Math.ceil(o.expectedSessions / o.sessEvictRate) + 30;
}

/** The postStart hook: a drained pod restarted on its volume serves again (an evacuation survives restarts). */
function undrainCommand(o: ManifestOptions): string[] {
  return [o.bin, 'ctl', '--api', `http://127.0.0.1:${PORTS.mgmt}`, 'node', 'undrain', '--timeout', '120'];
}

/** The preStop hook: drain this pod through its own management API. */
function drainCommand(o: ManifestOptions): string[] {
  return [
    o.bin, 'ctl', '--api', `http://127.0.0.1:${PORTS.mgmt}`, 'node', 'drain',
    '--timeout', String(drainSeconds(o)),
    '--conn-evict-rate', String(o.connEvictRate),
    '--sess-evict-rate', String(o.sessEvictRate),
    '--wait-takeover', String(o.waitTakeover),
    '--wait-health-check', String(o.waitHealthCheck),
  ];
}

/** DNS-1035 label, short enough for `<name>-headless` and the pods' names. */
const NAME = /^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$/;

/** The options from the command line, checked; a bad one throws with the flag's name. */
function manifestOptions(flags: Readonly<Record<string, unknown>>): ManifestOptions {
  const d = MANIFEST_DEFAULTS;
  const str = (k: string): string | undefined => (flags[k] === undefined ? undefined : String(flags[k]));
  const int = (k: string, fallback: number, min: number): number => {
    const v = flags[k] === undefined ? fallback : Number(flags[k]);
    if (!Number.isInteger(v) || v < min || v > 1e9) throw new RangeError(`invalid --${k} value: ${String(flags[k])} (an integer >= ${min})`);
    return v;
  };
  const name = str('name') ?? d.name;
  if (!NAME.test(name)) throw new RangeError(`invalid --name value: ${name} (lower-case letters, digits and '-', at most 42)`);
  const image = str('image') ?? '';
  if (image.trim() === '') throw new RangeError('--image is needed: the tidemq container image, e.g. registry.example.com/tidemq:0.1.0');
  const serviceType = str('service-type') ?? d.serviceType;
  if (serviceType !== 'ClusterIP' && serviceType !== 'NodePort' && serviceType !== 'LoadBalancer') throw new RangeError(`invalid --service-type value: ${serviceType} (ClusterIP, NodePort or LoadBalancer)`);
  const storage = str('storage') ?? d.storage;
  if (!/^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$/.test(storage)) throw new RangeError(`invalid --storage value: ${storage} (a quantity, e.g. 1Gi)`);
  const expectedConnections = int('expected-connections', d.expectedConnections, 0);
  return {
    name,
    namespace: str('namespace'),
    replicas: int('replicas', d.replicas, 1),
    image,
    bin: str('bin') ?? d.bin,
    storage,
    storageClass: str('storage-class'),
    serviceType,
    expectedConnections,
    expectedSessions: int('expected-sessions', expectedConnections, 0),
    connEvictRate: int('conn-evict-rate', d.connEvictRate, 1),
    sessEvictRate: int('sess-evict-rate', d.sessEvictRate, 1),
    waitTakeover: int('wait-takeover', d.waitTakeover, 0),
    waitHealthCheck: int('wait-health-check', d.waitHealthCheck, 0),
    secret: str('secret') ?? `${name}-secret`,
    withSecret: flags['with-secret'] === true,
  };
}

function manifests(o: ManifestOptions): YamlValue[] {
  const labels = { 'app.kubernetes.io/name': 'tidemq', 'app.kubernetes.io/instance': o.name };
  const meta = (name: string): YamlValue => ({ name, namespace: o.namespace, labels });
  const headless = `${o.name}-headless`;
  const secretRef = (key: string): { valueFrom: YamlValue } => ({ valueFrom: { secretKeyRef: { name: o.secret, key } } });
  const env: YamlValue[] = [
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    // A stable name: the pod's DNS name under the headless Service (a node's name is fixed once it joined).
    { name: 'TIDEMQ_NODE__NAME', value: `tidemq@$(POD_NAME).${headless}.$(POD_NAMESPACE).svc.cluster.local` },
    { name: 'TIDEMQ_NODE__DATA_DIR', value: DATA_DIR },
    { name: 'TIDEMQ_NODE__COOKIE', ...secretRef('cookie') },
    { name: 'TIDEMQ_LISTENERS__BIND', value: '0.0.0.0' },
    { name: 'TIDEMQ_LISTENERS__TCP_PORT', value: String(PORTS.mqtt) },
    { name: 'TIDEMQ_LISTENERS__WS_PORT', value: String(PORTS.ws) },
    { name: 'TIDEMQ_MANAGEMENT__BIND', value: '0.0.0.0' },
    { name: 'TIDEMQ_MANAGEMENT__PORT', value: String(PORTS.mgmt) },
    { name: 'TIDEMQ_MANAGEMENT__PASSWORD', ...secretRef('api-password') },
    // The preStop drain authenticates with these (tidemq ctl reads them).
    { name: 'TIDEMQ_API_PASSWORD', ...secretRef('api-password') },
    { name: 'TIDEMQ_CLUSTER__PORT', value: String(PORTS.cluster) },
    { name: 'TIDEMQ_CLUSTER__DISCOVERY', value: 'dns' },
    { name: 'TIDEMQ_CLUSTER__DNS_NAME', value: `${headless}.$(POD_NAMESPACE).svc.cluster.local` },
  ];
  const docs: YamlValue[] = [];
  if (o.withSecret) {
    docs.push({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: meta(o.secret),
      type: 'Opaque',
      stringData: { cookie: randomBytes(32).toString('hex'), 'api-password': randomBytes(16).toString('hex') },
    });
  }
  docs.push(
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(headless),
      spec: {
        clusterIP: 'None',
        // Pods find each other before they are ready (a new pod must join to become ready).
        publishNotReadyAddresses: true,
        selector: labels,
        ports: [
          { name: 'cluster', port: PORTS.cluster, targetPort: 'cluster' },
          { name: 'mgmt', port: PORTS.mgmt, targetPort: 'mgmt' },
        ],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(o.name),
      spec: {
        type: o.serviceType,
        selector: labels,
        ports: [
          { name: 'mqtt', port: PORTS.mqtt, targetPort: 'mqtt' },
          { name: 'ws', port: PORTS.ws, targetPort: 'ws' },
        ],
      },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: meta(o.name),
      spec: {
        serviceName: headless,
        replicas: o.replicas,
        podManagementPolicy: 'Parallel',
        updateStrategy: { type: 'RollingUpdate' },
        selector: { matchLabels: labels },
        template: {
          metadata: { labels, annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(PORTS.mgmt), 'prometheus.io/path': '/metrics' } },
          spec: {
            terminationGracePeriodSeconds: drainSeconds(o) + STOP_MARGIN_S,
            containers: [
              {
                name: 'tidemq',
                image: o.image,
                command: [o.bin, 'start'],
                env,
                ports: [
                  { name: 'mqtt', containerPort: PORTS.mqtt },
                  { name: 'ws', containerPort: PORTS.ws },
                  { name: 'mgmt', containerPort: PORTS.mgmt },
                  { name: 'cluster', containerPort: PORTS.cluster },
                ],
                readinessProbe: { httpGet: { path: AVAILABILITY_PATH, port: 'mgmt' }, periodSeconds: READINESS_PERIOD_S, failureThreshold: 1, successThreshold: 1 },
                livenessProbe: { tcpSocket: { port: 'mgmt' }, periodSeconds: 10, failureThreshold: 6 },
                lifecycle: { postStart: { exec: { command: undrainCommand(o) } }, preStop: { exec: { command: drainCommand(o) } } },
                volumeMounts: [{ name: 'data', mountPath: DATA_DIR }],
              },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'data' },
            spec: { accessModes: ['ReadWriteOnce'], storageClassName: o.storageClass, resources: { requests: { storage: o.storage } } },
          },
        ],
      },
    },
    {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: meta(o.name),
      // One pod drains at a time: the others take its clients.
      spec: { maxUnavailable: 1, selector: { matchLabels: labels } },
    },
  );
  return docs;
}

/** `tidemq k8s manifests [...]`: prints the objects; a bad flag is a usage error (exit 2). */
export function k8sCommands(y: Argv): Argv {
  return y
    .command(
      'manifests',
      'print the Kubernetes objects of a tidemq cluster as YAML, for `kubectl apply -f -`',
      (m) =>
        m
          .option('image', { type: 'string', describe: 'the tidemq container image (required)', requiresArg: true })
          .option('name', { type: 'string', describe: `StatefulSet and Service name (${MANIFEST_DEFAULTS.name})`, requiresArg: true })
          .option('namespace', { type: 'string', describe: "namespace (else kubectl's)", requiresArg: true })
          .option('replicas', { type: 'string', describe: `pods (${MANIFEST_DEFAULTS.replicas})`, requiresArg: true })
          .option('bin', { type: 'string', describe: `the tidemq launcher in the image (${MANIFEST_DEFAULTS.bin})`, requiresArg: true })
          .option('storage', { type: 'string', describe: `data volume size (${MANIFEST_DEFAULTS.storage})`, requiresArg: true })
          .option('storage-class', { type: 'string', describe: 'data volume storage class (the default one)', requiresArg: true })
          .option('service-type', { type: 'string', describe: `client Service type: ClusterIP, NodePort or LoadBalancer (${MANIFEST_DEFAULTS.serviceType})`, requiresArg: true })
          .option('expected-connections', { type: 'string', describe: `connections per pod; sizes the drain and the grace period (${MANIFEST_DEFAULTS.expectedConnections})`, requiresArg: true })
          .option('expected-sessions', { type: 'string', describe: 'sessions per pod (as many as connections)', requiresArg: true })
          .option('conn-evict-rate', { type: 'string', describe: `drain: connections evicted per second (${MANIFEST_DEFAULTS.connEvictRate})`, requiresArg: true })
          .option('sess-evict-rate', { type: 'string', describe: `drain: sessions moved per second (${MANIFEST_DEFAULTS.sessEvictRate})`, requiresArg: true })
          .option('wait-takeover', { type: 'string', describe: `drain: seconds for evicted clients to reconnect (${MANIFEST_DEFAULTS.waitTakeover})`, requiresArg: true })
          .option('wait-health-check', { type: 'string', describe: `drain: seconds out of the Endpoints before evicting (${MANIFEST_DEFAULTS.waitHealthCheck})`, requiresArg: true })
          .option('secret', { type: 'string', describe: 'Secret with keys cookie and api-password (<name>-secret)', requiresArg: true })
          .option('with-secret', { type: 'boolean', describe: 'print that Secret too, with random values (first install only)' })
          .epilog('Without --with-secret, create the Secret first: kubectl create secret generic tidemq-secret --from-literal=cookie="$(openssl rand -hex 32)" --from-literal=api-password="$(openssl rand -hex 16)"'),
      (argv) => {
        let options;
        try {
          options = manifestOptions(argv);
        } catch (err) {
          if (err instanceof RangeError) throw new UsageError(err.message);
          throw err;
        }
        process.stdout.write(toYaml(manifests(options)));
      },
    )
    .demandCommand(1, 'a k8s command is needed: manifests');
}
