// The connect path warmed at start over loopback TCP on a scratch broker: its CONNECTs are real
// (accepted, both protocol versions), no limit or gate of the node holds them up, it ends by a
// deadline, it leaves no socket behind, and nothing of it reaches the node's own broker, counters
// or logs.
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import t from 'tap';
import { warmConnectPath } from '../../src/broker/warm-up.js';
import { defaultConfig } from '../../src/config/schema.js';
import { startNode } from '../../src/node.js';
import { inProcessNodeConfig, waitFor } from './support.js';

/** Open TCP handles of this process (sockets and servers). */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}

t.test('every warm-up CONNECT is accepted, 3.1.1 and 5.0 alike, and no socket stays open', async (t) => {
  const before = tcpHandles();
  const result = await warmConnectPath(defaultConfig(), 200);
  t.equal(result.cycles, 200);
  t.equal(result.accepted, 200);
  await waitFor(() => tcpHandles() === before, 'the warm-up sockets and its listener closed');
});

/** IPv4 sockets in TIME_WAIT whose peer is 127.0.0.1:`port` (the client ends of that port's connections). */
function clientsInTimeWait(port: number): number {
  const peer = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  // Columns: sl local_address rem_address st ...; st 06 is TIME_WAIT.
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => {
      const cols = line.trim().split(/\s+/);
      return cols[2] === peer && cols[3] === '06';
    }).length;
}

t.test('no client port is left in TIME_WAIT, where it would block a later listen on it', async (t) => {
  const result = await warmConnectPath(defaultConfig(), 200);
  t.equal(result.accepted, 200);
  t.equal(clientsInTimeWait(result.port), 0, `no TIME_WAIT on the client side of port ${result.port}`);
});

t.test("the node's password file, ACL, PROXY header and admission limits do not apply to the scratch broker", async (t) => {
  const config = defaultConfig();
  config.auth.allow_anonymous = false;
  config.auth.password_file = '/nonexistent/passwd'; // never read: the scratch broker is anonymous
  config.auth.acl_file = '/nonexistent/acl';
  config.listeners.proxy_protocol = true;
  config.mqtt.max_connections = 1;
  config.mqtt.max_conn_rate = 1;
  config.mqtt.max_conn_burst = 1;
  config.mqtt.max_connecting_bytes = 1;
  const before = tcpHandles();
  t.equal((await warmConnectPath(config, 40)).accepted, 40);
  await waitFor(() => tcpHandles() === before, 'the warm-up sockets and its listener closed');
});

t.test('a warm-up not done by its deadline is cut short and closes what it opened', async (t) => {
  const before = tcpHandles();
  const started = Date.now();
  const result = await warmConnectPath(defaultConfig(), 1_000_000, 100);
  t.ok(Date.now() - started < 5000, 'resolved near its deadline, not after a million cycles');
  t.ok(result.cycles < 1_000_000, `cut short after ${result.cycles} cycles`);
  t.ok(result.accepted <= result.cycles);
  await waitFor(() => tcpHandles() === before, 'the warm-up sockets and its listener closed');
});

t.test('a started node shows none of it: no connection, session, counter or log line', async (t) => {
  const config = inProcessNodeConfig(t, 'warm@127.0.0.1');
  const lines: string[] = [];
  const node = await startNode(config, pino({ level: 'info' }, { write: (line: string) => lines.push(line) }));
  t.teardown(() => node.close());
  const { broker } = node;
  t.equal(broker.connections.size, 0);
  t.equal(broker.sessions.size, 0);
  t.equal(broker.stats.connectionsAccepted, 0);
  t.equal(broker.stats.connectionsTotal, 0);
  t.equal(broker.stats.sessionsCreated, 0);
  t.equal(node.listeners[0]?.stats.accepted, 0, "no accept on the node's listener");
  t.notOk(lines.some((l) => l.includes('warm-up-')), 'no warm-up client in the log');
});
