// What the upgrade and drain tests share: evacuation status and members read through a node's API,
// persistent sessions parked on a node, live clients held on one.
import mqtt, { type MqttClient } from 'mqtt';
import type { Test } from 'tap';
import { v5 as api } from '../helpers/admin.js';
import type { NodeProcess } from '../helpers/node-process.js';

export type Status = { status: string; process?: string; state?: string; stats?: { current_connected: number; current_sessions: number } };
export const statusOf = async (via: NodeProcess, node: string): Promise<Status> => (await api(via, 'GET', `/load_rebalance/status?node=${encodeURIComponent(node)}`)) as Status;
export const evacuations = async (n: NodeProcess): Promise<unknown[]> => ((await api(n, 'GET', '/load_rebalance/global_status')) as { evacuations: unknown[] }).evacuations;
export const members = async (n: NodeProcess): Promise<string[]> => {
  const v = (await api(n, 'GET', '/cluster')) as { running_nodes: string[]; stopped_nodes: string[] };
  return [...v.running_nodes, ...v.stopped_nodes].sort();
};
export const sessionsOn = async (n: NodeProcess): Promise<string[]> =>
  ((await api(n, 'GET', '/clients?limit=1000')) as { data: Array<{ clientid: string }> }).data.map((c) => c.clientid).sort();

/** Persistent 5.0 sessions subscribed at QoS 1 on `node`, then disconnected (they stay there). */
export async function parkSessions(node: NodeProcess, prefix: string, n: number, topic: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}`;
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: id, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 0 });
    await c.subscribeAsync(topic, { qos: 1 });
    await c.endAsync();
    ids.push(id);
  }
  return ids;
}

/** Live clients on `node` that stay away once evicted (no reconnect). */
export async function holdClients(t: Test, node: NodeProcess, prefix: string, n: number): Promise<MqttClient[]> {
  const clients = await Promise.all(
    Array.from({ length: n }, (_, i) => mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: `${prefix}-${i}`, reconnectPeriod: 0 })),
  );
  for (const c of clients) c.on('error', () => undefined);
  t.teardown(() => Promise.all(clients.map((c) => c.endAsync(true))));
  return clients;
}
