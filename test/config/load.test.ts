import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { defaultClusterPort, defaultConfig } from '../../src/config/schema.js';

const dir = t.testdir();

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The message of the ConfigError that fn throws, or a description of what happened instead. */
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof ConfigError ? err.message : `not a ConfigError: ${String(err)}`;
  }
  return 'nothing thrown';
}

t.test('no file, no environment, no flags: the embedded defaults', async (t) => {
  const c = loadConfig({}, {});
  t.same(c, defaultConfig());
  t.equal(c.node.name, 'tidemq@127.0.0.1');
  t.equal(c.node.data_dir, './data/tidemq@127.0.0.1');
  t.equal(c.listeners.bind, '127.0.0.1');
  t.equal(c.listeners.tcp_port, 1883);
  t.equal(c.listeners.ws_path, '/mqtt');
  t.equal(c.listeners.proxy_header_timeout, 5);
  t.equal(c.mqtt.max_packet_size, 1048576);
  t.equal(c.mqtt.idle_timeout, 15);
  t.equal(c.management.port, 8081);
  t.equal(c.cluster.port, 4370);
  t.equal(c.auth.allow_anonymous, true);
  t.equal(c.log.level, 'info');
});

t.test('cluster port from the numeric suffix of the node name', async (t) => {
  t.equal(defaultClusterPort('tidemq@127.0.0.1'), 4370);
  t.equal(defaultClusterPort('tidemq2@127.0.0.1'), 4372);
  t.equal(defaultClusterPort('emqx-1@10.0.0.1'), 4371);
  t.equal(defaultClusterPort('n12@host2'), 4382, 'the host part does not count');
  const c = loadConfig({ node: 'tidemq3@127.0.0.1' }, {});
  t.equal(c.cluster.port, 4373);
  t.equal(c.node.data_dir, './data/tidemq3@127.0.0.1', 'data_dir follows the node name');
  t.equal(loadConfig({ node: 'tidemq3@127.0.0.1', clusterPort: 5000 }, {}).cluster.port, 5000);
});

t.test('precedence: defaults < file < environment < flags', async (t) => {
  const toml = file('tidemq.toml', '[listeners]\ntcp_port = 1000\nws_port = 1001\ntls_port = 1002\n[node]\nname = "f1@127.0.0.1"\n');
  const env = { TIDEMQ_LISTENERS__WS_PORT: '2001', TIDEMQ_LISTENERS__TLS_PORT: '2002', TIDEMQ_NODE__NAME: 'e1@127.0.0.1' };
  const c = loadConfig({ config: toml, tlsPort: 3002 }, env);
  t.equal(c.listeners.tcp_port, 1000, 'file over default');
  t.equal(c.listeners.ws_port, 2001, 'environment over file');
  t.equal(c.listeners.tls_port, 3002, 'flag over environment');
  t.equal(c.listeners.wss_port, 8084, 'default where nothing is set');
  t.equal(c.node.name, 'e1@127.0.0.1');
  t.equal(loadConfig({ config: toml, node: 'x9@127.0.0.1' }, env).node.name, 'x9@127.0.0.1');
});

t.test('--port-offset moves every port left at its default', async (t) => {
  const c = loadConfig({ portOffset: 1000, node: 'tidemq2@127.0.0.1', mqttPort: 1999 }, { TIDEMQ_MANAGEMENT__PORT: '9000' });
  t.equal(c.listeners.tcp_port, 1999, 'explicit flag stays');
  t.equal(c.management.port, 9000, 'explicit environment value stays');
  t.equal(c.listeners.tls_port, 9883);
  t.equal(c.listeners.ws_port, 9083);
  t.equal(c.listeners.wss_port, 9084);
  t.equal(c.cluster.port, 5372);
  t.match(configError(() => loadConfig({ portOffset: 60000 }, {})), /--port-offset.*listeners\.tls_port/, 'offset past 65535');
  t.match(configError(() => loadConfig({ portOffset: 1.5 }, {})), /--port-offset/, 'fractional offset');
});

t.test('TOML file with every kind of value', async (t) => {
  const path = file(
    'c.toml',
    `# a comment
[node]
name = "tidemq1@127.0.0.1"   # trailing comment
cookie = 'lit\\eral'
[mqtt]
max_packet_size = "2MB"
max_queued_bytes = 1_000_000
idle_timeout = "500ms"
session_expiry_max = "1h"
retain_available = false
max_qos = 1
[cluster]
discovery = "static"
seeds = [
  "tidemq2@127.0.0.1", # first
  "tidemq3@127.0.0.1",
]
rpc_timeout = 2.5
[log]
level = "debug"
`,
  );
  const c = loadConfig({ config: path }, {});
  t.equal(c.node.name, 'tidemq1@127.0.0.1');
  t.equal(c.node.cookie, 'lit\\eral', 'literal strings keep backslashes');
  t.equal(c.mqtt.max_packet_size, 2 * 1024 * 1024);
  t.equal(c.mqtt.max_queued_bytes, 1000000);
  t.equal(c.mqtt.idle_timeout, 0.5);
  t.equal(c.mqtt.session_expiry_max, 3600);
  t.equal(c.mqtt.retain_available, false);
  t.equal(c.mqtt.max_qos, 1);
  t.same(c.cluster.seeds, ['tidemq2@127.0.0.1', 'tidemq3@127.0.0.1']);
  t.equal(c.cluster.rpc_timeout, 2.5);
  t.equal(c.log.level, 'debug');
});

t.test('JSON file', async (t) => {
  const path = file('c.json', JSON.stringify({ auth: { allow_anonymous: false, acl_default: 'deny' }, mqtt: { max_inflight: 10 } }));
  const c = loadConfig({ config: path }, {});
  t.equal(c.auth.allow_anonymous, false);
  t.equal(c.auth.acl_default, 'deny');
  t.equal(c.mqtt.max_inflight, 10);
  t.match(configError(() => loadConfig({ config: file('bad.json', '{"mqtt": ') }, {})), /bad\.json: invalid JSON/, 'syntax error');
  t.match(configError(() => loadConfig({ config: file('n.json', '{"mqtt": {"max_qos": null}}') }, {})), /mqtt\.max_qos/, 'null value');
  t.match(configError(() => loadConfig({ config: file('s.json', '{"mqtt": 3}') }, {})), /section "mqtt"/, 'section not an object');
});

t.test('file errors', async (t) => {
  t.match(configError(() => loadConfig({ config: '/nonexistent/tidemq.toml' }, {})), /cannot read config file \/nonexistent\/tidemq\.toml: ENOENT/, 'missing');
  t.match(configError(() => loadConfig({ config: file('c.yaml', 'a: 1') }, {})), /expected a \.toml or \.json file/, 'extension');
  t.match(configError(() => loadConfig({ config: file('u.toml', '[nodes]\nname = "a@b"\n') }, {})), /unknown config section \[nodes\]/, 'section');
  t.match(configError(() => loadConfig({ config: file('k.toml', '[mqtt]\nmax_packet = 1\n') }, {})), /unknown config key mqtt\.max_packet in/, 'key');
  t.match(configError(() => loadConfig({ config: file('l.toml', '[mqtt]\n\nmax_qos = \n') }, {})), /l\.toml:3: expected a value/, 'line number');
});

t.test('environment', async (t) => {
  const c = loadConfig({}, {
    TIDEMQ_NODE__NAME: 'tidemq1@127.0.0.1',
    TIDEMQ_MQTT__MAX_PACKET_SIZE: '2MB',
    TIDEMQ_MQTT__MAX_CONNECT_SIZE: '64KiB',
    TIDEMQ_AUTH__ALLOW_ANONYMOUS: 'false',
    TIDEMQ_CLUSTER__SEEDS: 'a1@h, a2@h a3@h',
    TIDEMQ_CLUSTER__DISCOVERY: 'static',
    TIDEMQ_CLUSTER__AUTOCLEAN: '5m',
    TIDEMQ_MANAGEMENT__METRICS_AUTH: 'true',
    TIDEMQ_API_USER: 'ignored',
    TIDEMQ_API_PASSWORD: 'ignored',
    TIDEMQ_SOMETHING: 'ignored',
    PATH: '/bin',
  });
  t.equal(c.node.name, 'tidemq1@127.0.0.1');
  t.equal(c.mqtt.max_packet_size, 2097152);
  t.equal(c.mqtt.max_connect_size, 65536);
  t.equal(c.auth.allow_anonymous, false);
  t.same(c.cluster.seeds, ['a1@h', 'a2@h', 'a3@h']);
  t.equal(c.cluster.autoclean, 300);
  t.equal(c.management.metrics_auth, true, '/metrics behind the management credentials');
  t.match(configError(() => loadConfig({}, { TIDEMQ_MQTT__NOPE: '1' })), /TIDEMQ_MQTT__NOPE/, 'unknown key');
  t.match(configError(() => loadConfig({}, { TIDEMQ_A__B__C: '1' })), /TIDEMQ_A__B__C/, 'too many levels');
});

t.test('flags', async (t) => {
  const c = loadConfig(
    { node: 'n5@127.0.0.1', mqttPort: 0, wsPort: 0, wssPort: 0, tlsPort: 0, mgmtPort: 0, clusterPort: 0, dataDir: '/tmp/d', cookie: 's3cret', join: ['n1@127.0.0.1,n2@127.0.0.1', 'n3@127.0.0.1'] },
    {},
  );
  t.equal(c.node.name, 'n5@127.0.0.1');
  t.same([c.listeners.tcp_port, c.listeners.tls_port, c.listeners.ws_port, c.listeners.wss_port, c.management.port, c.cluster.port], [0, 0, 0, 0, 0, 0]);
  t.equal(c.node.data_dir, '/tmp/d');
  t.equal(c.node.cookie, 's3cret');
  t.same(c.cluster.seeds, ['n1@127.0.0.1', 'n2@127.0.0.1', 'n3@127.0.0.1']);
  t.equal(c.cluster.discovery, 'static', '--join means static discovery');
  t.match(configError(() => loadConfig({ mqttPort: Number.NaN }, {})), /listeners\.tcp_port.*--mqtt-port/, 'bad port flag names key and flag');
  t.match(configError(() => loadConfig({ join: ['nope'] }, {})), /cluster\.seeds/, 'bad --join');
});

t.test('every kind of bad value names its key and the expected form', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['TIDEMQ_MQTT__MAX_PACKET_SIZE', 'abc', /^invalid value for mqtt\.max_packet_size: expected a size such as 1048576 or 1MB.*got "abc"/],
    ['TIDEMQ_MQTT__MAX_PACKET_SIZE', '1TB', /mqtt\.max_packet_size/],
    ['TIDEMQ_MQTT__MAX_PACKET_SIZE', '300MB', /mqtt\.max_packet_size/],
    ['TIDEMQ_MQTT__IDLE_TIMEOUT', '5 weeks', /mqtt\.idle_timeout: expected a duration/],
    ['TIDEMQ_MQTT__IDLE_TIMEOUT', '-1', /mqtt\.idle_timeout/],
    ['TIDEMQ_MQTT__MAX_INFLIGHT', '1.5', /mqtt\.max_inflight: expected an integer/],
    ['TIDEMQ_MQTT__MAX_INFLIGHT', '0', /mqtt\.max_inflight/],
    ['TIDEMQ_MQTT__RETAIN_AVAILABLE', 'yes', /mqtt\.retain_available: expected true or false/],
    ['TIDEMQ_MQTT__MAX_QOS', '3', /mqtt\.max_qos: expected 0, 1 or 2/],
    ['TIDEMQ_LISTENERS__TCP_PORT', '70000', /listeners\.tcp_port: expected a port number/],
    ['TIDEMQ_NODE__NAME', 'tidemq', /node\.name: expected a node name such as tidemq1@127\.0\.0\.1/],
    ['TIDEMQ_NODE__COOKIE', '', /node\.cookie: expected a non-empty string/],
    ['TIDEMQ_AUTH__ACL_DEFAULT', 'maybe', /auth\.acl_default: expected one of allow, deny/],
    ['TIDEMQ_LOG__LEVEL', 'loud', /log\.level: expected one of trace/],
    ['TIDEMQ_CLUSTER__DISCOVERY', 'mdns', /cluster\.discovery/],
    ['TIDEMQ_LISTENERS__WS_PATH', 'mqtt', /listeners\.ws_path: expected a URL path such as \/mqtt/],
    ['TIDEMQ_LISTENERS__WS_PATH', '/mqtt?x=1', /listeners\.ws_path/],
    ['TIDEMQ_LISTENERS__PROXY_HEADER_TIMEOUT', '2h', /listeners\.proxy_header_timeout: expected a duration/],
    ['TIDEMQ_AUTH__MAX_PENDING_CHECKS', '0', /auth\.max_pending_checks: expected an integer/],
    ['TIDEMQ_AUTH__MAX_FAILED_LOGINS', '-1', /auth\.max_failed_logins/],
    ['TIDEMQ_AUTH__FAILED_LOGIN_WINDOW', 'soon', /auth\.failed_login_window: expected a duration/],
    ['TIDEMQ_AUTH__ALLOW_SYS_PUBLISH', 'sometimes', /auth\.allow_sys_publish: expected true or false/],
    ['TIDEMQ_AUTH__ACL_CACHE_SIZE', 'big', /auth\.acl_cache_size: expected an integer/],
    ['TIDEMQ_MANAGEMENT__MAX_FAILED_LOGINS', '1.5', /management\.max_failed_logins: expected an integer/],
    ['TIDEMQ_MANAGEMENT__FAILED_LOGIN_WINDOW', '2 days', /management\.failed_login_window/],
  ];
  for (const [name, value, pattern] of cases) {
    t.match(configError(() => loadConfig({}, { [name]: value })), pattern, `${name}=${value}`);
  }
  const tomlBad = file('b.toml', '[mqtt]\nmax_inflight = "many"\n');
  t.match(configError(() => loadConfig({ config: tomlBad }, {})), /mqtt\.max_inflight.*got "many" \(from .*b\.toml\)/, 'file value names the file');
});

t.test('sizes and durations in their accepted forms', async (t) => {
  const size = (v: string): number => loadConfig({}, { TIDEMQ_MQTT__MAX_QUEUED_BYTES: v }).mqtt.max_queued_bytes;
  t.equal(size('123'), 123);
  t.equal(size('64KB'), 65536);
  t.equal(size('1mb'), 1048576);
  t.equal(size('1MiB'), 1048576);
  t.equal(size('1GB'), 1073741824);
  t.equal(size('10B'), 10);
  const dur = (v: string): number => loadConfig({}, { TIDEMQ_CLUSTER__RPC_TIMEOUT: v }).cluster.rpc_timeout;
  t.equal(dur('20'), 20);
  t.equal(dur('500ms'), 0.5);
  t.equal(dur('15s'), 15);
  t.equal(dur('5m'), 300);
  t.equal(dur('1h'), 3600);
});

t.test('cluster.autoheal = false is refused, not silently ignored', async (t) => {
  t.match(configError(() => loadConfig({}, { TIDEMQ_CLUSTER__AUTOHEAL: 'false' })), /cluster\.autoheal/);
  t.equal(loadConfig({}, { TIDEMQ_CLUSTER__AUTOHEAL: 'true' }).cluster.autoheal, true);
});

t.test('cross-key rules', async (t) => {
  t.match(configError(() => loadConfig({}, { TIDEMQ_MANAGEMENT__BIND: '0.0.0.0' })), /management\.bind.*management\.password.*"public"/, 'public bind, default password');
  t.equal(loadConfig({}, { TIDEMQ_MANAGEMENT__BIND: '0.0.0.0', TIDEMQ_MANAGEMENT__PASSWORD: 'x' }).management.bind, '0.0.0.0', 'allowed with a password');
  for (const bind of ['127.0.0.1', '::1', 'localhost']) {
    t.equal(loadConfig({}, { TIDEMQ_MANAGEMENT__BIND: bind }).management.password, 'public', `${bind} with the default password`);
  }
  t.match(configError(() => loadConfig({}, { TIDEMQ_LISTENERS__TLS_CERT_FILE: 'c.pem' })), /tls_key_file/, 'cert without key');
  t.match(configError(() => loadConfig({}, { TIDEMQ_LISTENERS__TLS_VERIFY_PEER: 'true' })), /listeners\.tls_ca_file/, 'verify peer without a CA');
  t.match(
    configError(() => loadConfig({}, { TIDEMQ_LISTENERS__TLS_CN_AS_USERNAME: 'true', TIDEMQ_LISTENERS__TLS_CA_FILE: 'ca.pem' })),
    /listeners\.tls_cn_as_username/,
    'CN as user name without verification',
  );
  t.equal(
    loadConfig({}, { TIDEMQ_LISTENERS__TLS_CN_AS_USERNAME: 'true', TIDEMQ_LISTENERS__TLS_VERIFY_PEER: 'true', TIDEMQ_LISTENERS__TLS_CA_FILE: 'ca.pem' })
      .listeners.tls_cn_as_username,
    true,
  );
  t.match(configError(() => loadConfig({}, { TIDEMQ_CLUSTER__DISCOVERY: 'static' })), /cluster\.seeds/, 'static without seeds');
  t.match(configError(() => loadConfig({}, { TIDEMQ_CLUSTER__DISCOVERY: 'dns' })), /cluster\.dns_name/, 'dns without a name');
  t.match(configError(() => loadConfig({}, { TIDEMQ_CLUSTER__TLS_KEY_FILE: 'k.pem' })), /cluster\.tls_cert_file and cluster\.tls_key_file/, 'cluster key without cert');
  t.match(
    configError(() => loadConfig({}, { TIDEMQ_CLUSTER__TLS_VERIFY_PEER: 'true', TIDEMQ_CLUSTER__TLS_CERT_FILE: 'c.pem', TIDEMQ_CLUSTER__TLS_KEY_FILE: 'k.pem' })),
    /cluster\.tls_verify_peer: needs .*cluster\.tls_ca_file/,
    'cluster peer verification without the cluster CA',
  );
  t.match(configError(() => loadConfig({}, { TIDEMQ_CLUSTER__MAX_HANDSHAKE_FRAME: '100' })), /cluster\.max_handshake_frame: expected a size .*from 256/, 'a handshake frame too small for a hello');
  t.match(configError(() => loadConfig({}, { TIDEMQ_CLUSTER__MAX_LINK_BACKLOG: '1KB' })), /cluster\.max_link_backlog/, 'a link backlog below 64 KiB');
  t.equal(loadConfig({}, { TIDEMQ_CLUSTER__HANDSHAKE_TIMEOUT: '500ms' }).cluster.handshake_timeout, 0.5);
  t.match(configError(() => loadConfig({}, { TIDEMQ_CLUSTER__HANDSHAKE_TIMEOUT: '0' })), /cluster\.handshake_timeout: expected a duration above 0/);
});
