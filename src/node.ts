// One tidemq node: the broker and its listeners, wired from a config. `tidemq start` runs this.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import { startAdminServer } from './admin/server.js';
import { VERSION } from './admin/version.js';
import { loadAcl } from './broker/acl.js';
import { createAuthenticator } from './broker/auth.js';
import { growFdTable, nodeFdTableGoal } from './broker/fd-table.js';
import { LoginThrottle } from './broker/login-throttle.js';
import { Broker } from './broker/broker.js';
import { serverSwitch, type AcceptSwitch } from './broker/accept-switch.js';
import { ListenerGate, listenTcp, STREAM_BACKLOG, type ListenerName, type ListenerStats } from './broker/tcp-listener.js';
import { TimerWheel, WHEEL_TICK_MS } from './broker/timer-wheel.js';
import { warmConnectPath } from './broker/warm-up.js';
import { listenTls } from './broker/tls-listener.js';
import { listenWs } from './broker/ws-listener.js';
import { checkCookie, Cluster } from './cluster/cluster.js';
import { NodeControl } from './cluster/node-control.js';
import type { Config } from './config/schema.js';
import { ReasonCode } from './mqtt/reason-codes.js';
import { countBroker } from './metrics/counts.js';
import { Metrics } from './metrics/metrics.js';
import type { EvictionAgent } from './rebalance/eviction-agent.js';
import { NodeRebalance } from './rebalance/service.js';
import { LmdbStore } from './store/lmdb-store.js';

/** Background store maintenance: entries of ended sessions deleted this many at a time, this often. */
const SWEEP_BATCH = 5000;
const SWEEP_INTERVAL_MS = 1000;

/** A running listener: its bound port and its accept counters (metrics label `listener`). */
export interface ListenerInfo {
  readonly name: ListenerName;
  readonly port: number;
  readonly stats: ListenerStats;
}

export interface NodeHandle {
  readonly broker: Broker;
  readonly cluster: Cluster;
  /** Eviction agent and evacuation of this node. */
  readonly rebalance: NodeRebalance;
  /** Bound MQTT/TCP port (differs from the config when that asked for port 0). */
  readonly mqttPort: number;
  /** Bound management HTTP port (API, /metrics, availability check). */
  readonly mgmtPort: number;
  /** The listeners that started, TCP first. */
  readonly listeners: readonly ListenerInfo[];
  close(): Promise<void>;
}

type Stop = () => Promise<void>;

function serverPort(server: Server, configured: number): number {
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : configured;
}

function stopServer(server: Server): Stop {
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Starts the configured listeners: TCP always; TLS and WSS when cert and key files are set;
 * each but TCP can be switched off. If one fails, those already open are closed again.
 */
async function startListeners(broker: Broker, listeners: ListenerInfo[], stops: Stop[], switches: AcceptSwitch[]): Promise<void> {
  const l = broker.config.listeners;
  const haveCert = l.tls_cert_file !== '';
  const tcpGate = new ListenerGate('tcp', broker, l.tcp_max_connections);
  const tcp = await listenTcp(broker, tcpGate, l.bind, l.tcp_port);
  stops.push(stopServer(tcp));
  listeners.push({ name: 'tcp', port: serverPort(tcp, l.tcp_port), stats: tcpGate.stats });
  switches.push(serverSwitch(tcpGate, tcp, l.bind, serverPort(tcp, l.tcp_port), STREAM_BACKLOG));
  if (haveCert && l.tls_enabled) {
    const gate = new ListenerGate('tls', broker, l.tls_max_connections);
    const server = await listenTls(broker, gate, l.bind, l.tls_port);
    stops.push(stopServer(server));
    listeners.push({ name: 'tls', port: serverPort(server, l.tls_port), stats: gate.stats });
    switches.push(serverSwitch(gate, server, l.bind, serverPort(server, l.tls_port), STREAM_BACKLOG));
  }
  for (const [name, enabled, port, max] of [
    ['ws', l.ws_enabled, l.ws_port, l.ws_max_connections],
    ['wss', haveCert && l.wss_enabled, l.wss_port, l.wss_max_connections],
  ] as const) {
    if (!enabled) continue;
    const gate = new ListenerGate(name, broker, max);
    const server = await listenWs(broker, gate, l.bind, port, name === 'wss');
    stops.push(async () => server.close());
    listeners.push({ name, port: server.port, stats: gate.stats });
    switches.push({ gate, pause: server.pause, resume: server.resume });
  }
}

/** The management HTTP server with this node's metrics; returns its bound port. */
async function startManagement(broker: Broker, cluster: Cluster, rebalance: NodeRebalance, nodeControl: NodeControl, listeners: readonly ListenerInfo[], stops: Stop[], log: Logger): Promise<number> {
  const { node, management: m } = broker.config;
  const loginThrottle = new LoginThrottle(m.max_failed_logins, m.failed_login_window * 1000);
  const metrics = new Metrics({ nodeName: node.name, version: VERSION, broker, listeners, rebalance, cluster, managementLogins: loginThrottle });
  const ctx = { broker, nodeName: node.name, version: VERSION, startedAt: Date.now(), availability: rebalance.agent, rebalance, cluster, nodeControl };
  const options = { bind: m.bind, port: m.port, username: m.username, password: m.password, metricsAuth: m.metrics_auth, loginThrottle };
  const server = await startAdminServer(ctx, metrics, options, log);
  stops.push(async () => server.close());
  return server.port;
}

/**
 * listeners.stop_accepting_on_evacuation: the listeners stop accepting while the eviction agent
 * refuses new connections, and accept again when it stops (a node restarted mid-evacuation
 * pauses right after its first listen).
 */
function pauseWhileRefusing(agent: EvictionAgent, switches: readonly AcceptSwitch[], log: Logger): void {
  const apply = (refusing: boolean): void => {
    for (const s of switches) {
      if (s.gate.stats.accepting !== refusing) continue;
      s.gate.stats.accepting = !refusing;
      if (refusing) {
        s.pause();
        continue;
      }
      s.resume().then(
        // Paused again while the listen was under way (a cluster worker's listen asks its primary).
        () => void (s.gate.stats.accepting ? undefined : s.pause()),
        (err: unknown) => {
          s.gate.stats.accepting = false;
          log.error({ err, listener: s.gate.name }, 'cannot accept again after the evacuation');
        },
      );
    }
    const listeners = switches.map((s) => s.gate.name);
    if (refusing) log.info({ listeners }, 'stopped accepting while evacuating (listeners.stop_accepting_on_evacuation)');
    else log.info({ listeners }, 'accepting again');
  };
  agent.onRefusingChange = apply;
  if (agent.refusing) apply(true);
}

export interface NodeHooks {
  /** Stops the process gracefully when the management API asks (POST /nodes/:node/stop); default: close the node. */
  readonly requestStop?: () => void;
}

export async function startNode(config: Config, log: Logger, hooks: NodeHooks = {}): Promise<NodeHandle> {
  // A bad password or ACL file is a configuration error: found before anything is created.
  checkCookie(config);
  const authenticator = createAuthenticator(config.auth, log);
  const acl = loadAcl(config.auth);
  await mkdir(config.node.data_dir, { recursive: true });
  // A corrupt or incompatible store throws here, naming its path, before anything listens.
  const store = LmdbStore.open(join(config.node.data_dir, 'lmdb'));
  const wheel = new TimerWheel(WHEEL_TICK_MS);
  const broker = new Broker(config, wheel, authenticator, acl, log, store);
  const restored = broker.sessions.restore(Date.now());
  log.info({ path: store.path, ...restored }, 'session store loaded');
  // Both before the listeners, side by side: the table grows on a worker thread.
  const [warm, fdTable] = await Promise.all([warmConnectPath(config), growFdTable(nodeFdTableGoal(config.mqtt.max_connections))]);
  log.debug(warm, 'connect path warmed up');
  log.debug(fdTable, 'file descriptor table grown');
  const sweeper = setInterval(() => store.sweep(SWEEP_BATCH), SWEEP_INTERVAL_MS);
  sweeper.unref();
  wheel.start();
  const cluster = new Cluster(broker, config, log);
  const rebalance = new NodeRebalance(broker, store, cluster, log);
  let handle: NodeHandle | undefined;
  const live = (): { connections: number; sessions: number } => {
    const c = countBroker(broker);
    return { connections: c.liveConnections, sessions: c.sessions };
  };
  const nodeControl = new NodeControl(cluster, hooks.requestStop ?? (() => void handle?.close()), live, log);
  // Before any listener: a node restarted mid-evacuation refuses from its first accept (SPEC 6).
  rebalance.resume();
  const listeners: ListenerInfo[] = [];
  const stops: Stop[] = [];
  let mgmtPort: number;
  try {
    // Before the listeners: a client of a clustered node may need its session from a peer.
    await cluster.start();
    stops.push(() => cluster.stop());
    // Before the MQTT listeners: once MQTT accepts, the availability check answers too.
    mgmtPort = await startManagement(broker, cluster, rebalance, nodeControl, listeners, stops, log);
    const switches: AcceptSwitch[] = [];
    await startListeners(broker, listeners, stops, switches);
    if (config.listeners.stop_accepting_on_evacuation) pauseWhileRefusing(rebalance.agent, switches, log);
  } catch (err) {
    rebalance.close();
    await Promise.all(stops.map((stop) => stop()));
    wheel.stop();
    clearInterval(sweeper);
    await store.close();
    throw err;
  }
  const mqttPort = (listeners[0] as ListenerInfo).port;
  const bound = Object.fromEntries(listeners.map((li) => [li.name === 'tcp' ? 'mqtt' : li.name, `${config.listeners.bind}:${li.port}`]));
  log.info({ node: config.node.name, ...bound, management: `${config.management.bind}:${mgmtPort}`, data_dir: config.node.data_dir }, 'tidemq node started');

  let closing: Promise<void> | undefined;
  return (handle = {
    broker,
    cluster,
    rebalance,
    mqttPort,
    mgmtPort,
    listeners,
    close: () => (closing ??= (rebalance.close(), shutdown(broker, stops, wheel, log)).then(() => {
      clearInterval(sweeper);
      return store.close();
    })),
  });
}

/** Stop accepting, tell 5.0 clients the server is shutting down (0x8B), close everyone. */
async function shutdown(broker: Broker, stops: Stop[], wheel: TimerWheel, log: Logger): Promise<void> {
  log.info('shutting down');
  const closed = stops.map((stop) => stop());
  for (const conn of [...broker.connections]) conn.disconnect(ReasonCode.ServerShuttingDown, true);
  await Promise.all(closed);
  wheel.stop();
  log.info('stopped');
}
