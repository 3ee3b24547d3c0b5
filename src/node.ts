// One tidemq node: the broker and its listeners, wired from a config. `tidemq start` runs this.
import { mkdir } from 'node:fs/promises';
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import { loadAcl } from './broker/acl.js';
import { createAuthenticator } from './broker/auth.js';
import { Broker } from './broker/broker.js';
import { listenTcp } from './broker/tcp-listener.js';
import { TimerWheel } from './broker/timer-wheel.js';
import type { Config } from './config/schema.js';
import { ReasonCode } from './mqtt/reason-codes.js';

/** Resolution of the shared timer wheel: keepalives and deadlines are checked this often. */
const WHEEL_TICK_MS = 250;

export interface NodeHandle {
  readonly broker: Broker;
  /** Bound MQTT/TCP port (differs from the config when that asked for port 0). */
  readonly mqttPort: number;
  close(): Promise<void>;
}

export async function startNode(config: Config, log: Logger): Promise<NodeHandle> {
  await mkdir(config.node.data_dir, { recursive: true });
  const wheel = new TimerWheel(WHEEL_TICK_MS);
  const broker = new Broker(config, wheel, createAuthenticator(config.auth), loadAcl(config.auth), log);
  wheel.start();
  const tcp = await listenTcp(broker, config.listeners.bind, config.listeners.tcp_port);
  const address = tcp.address();
  const mqttPort = typeof address === 'object' && address !== null ? address.port : config.listeners.tcp_port;
  log.info({ node: config.node.name, mqtt: `${config.listeners.bind}:${mqttPort}`, data_dir: config.node.data_dir }, 'tidemq node started');

  let closing: Promise<void> | undefined;
  return {
    broker,
    mqttPort,
    close: () => (closing ??= shutdown(broker, [tcp], wheel, log)),
  };
}

/** Stop accepting, tell 5.0 clients the server is shutting down (0x8B), close everyone. */
async function shutdown(broker: Broker, servers: Server[], wheel: TimerWheel, log: Logger): Promise<void> {
  log.info('shutting down');
  const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
  for (const conn of [...broker.connections]) conn.disconnect(ReasonCode.ServerShuttingDown, true);
  await Promise.all(closed);
  wheel.stop();
  log.info('stopped');
}
