// The connect path warmed at start on a scratch broker: its CONNECTs are real (accepted, both
// protocol versions), and nothing of them reaches the node's own broker, counters or logs.
import { pino } from 'pino';
import t from 'tap';
import { warmConnectPath } from '../../src/broker/warm-up.js';
import { defaultConfig } from '../../src/config/schema.js';
import { startNode } from '../../src/node.js';

t.test('every warm-up CONNECT is accepted, 3.1.1 and 5.0 alike', async (t) => {
  t.equal(warmConnectPath(defaultConfig(), 400), 400);
});

t.test('a password file or an ACL of the node does not apply to the scratch broker', async (t) => {
  const config = defaultConfig();
  config.auth.allow_anonymous = false;
  config.auth.password_file = '/nonexistent/passwd'; // never read: the scratch broker is anonymous
  config.auth.acl_file = '/nonexistent/acl';
  t.equal(warmConnectPath(config, 40), 40);
});

t.test('a started node shows none of it: no connection, session, counter or log line', async (t) => {
  const config = defaultConfig();
  config.node.name = 'warm@127.0.0.1';
  config.node.data_dir = t.testdir();
  config.listeners.tcp_port = 0;
  config.listeners.ws_enabled = false;
  config.management.port = 0;
  config.cluster.port = 0;
  const lines: string[] = [];
  const node = await startNode(config, pino({ level: 'info' }, { write: (line: string) => lines.push(line) }));
  t.teardown(() => node.close());
  const { broker } = node;
  t.equal(broker.connections.size, 0);
  t.equal(broker.sessions.size, 0);
  t.equal(broker.stats.connectionsAccepted, 0);
  t.equal(broker.stats.connectionsTotal, 0);
  t.equal(broker.stats.sessionsCreated, 0);
  t.notOk(lines.some((l) => l.includes('warm-up-')), 'no warm-up client in the log');
});
