// HAProxy (the Debian package) in front of two tidemq nodes, configured as in the seed
// `haproxy-load-balancing`: TLS terminated at HAProxy, PROXY v2 to the nodes, stickiness on the
// MQTT client id, non-MQTT connections rejected. The nodes log `client connected` at debug.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import mqtt from 'mqtt';
import t from 'tap';
import { startNode, type NodeProcess } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { run, startProcess } from '../helpers/process.js';
import { eventually, makeCerts } from './support.js';

const haproxy = await run('haproxy', ['-v']).catch(() => undefined);
if (haproxy === undefined || haproxy.code !== 0) {
  t.plan(0, 'haproxy is not installed (Debian package haproxy)');
} else {
  t.test('TLS at HAProxy, PROXY v2 and client-id stickiness to two nodes', async (t) => {
    const certs = await makeCerts(t);
    const env = { TIDEMQ_LOG__LEVEL: 'debug', TIDEMQ_LISTENERS__PROXY_PROTOCOL: 'true' };
    const nodes = [await startNode(t, { env }), await startNode(t, { env })] as const;
    const front = await freePort();
    const cfg = join(certs.dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global
  maxconn 1000

defaults
  mode tcp
  timeout connect 5s
  timeout client 240s
  timeout server 240s

backend mqtt_backend
  mode tcp
  balance roundrobin
  stick-table type string len 32 size 100k expire 30m
  stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)
${nodes.map((n, i) => `  server tidemq${i + 1} 127.0.0.1:${n.mqttPort} check check-send-proxy send-proxy-v2 inter 1s`).join('\n')}

frontend mqtt_tls_frontend
  bind 127.0.0.1:${front} ssl crt ${certs.serverPem}
  mode tcp
  tcp-request inspect-delay 10s
  tcp-request content reject unless { req.payload(0,0),mqtt_is_valid }
  default_backend mqtt_backend
`,
    );
    await startProcess(t, { name: 'haproxy', command: 'haproxy', args: ['-f', cfg, '-db'], port: front });

    const ca = readFileSync(certs.caCert);
    /** Which node logged this client's connect line from `address`, after `seen` earlier lines. */
    const connectLines = (n: NodeProcess, clientId: string): Array<Record<string, unknown>> =>
      n
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((r) => r.msg === 'client connected' && r.clientId === clientId);

    const connectVia = async (clientId: string, localAddress: string): Promise<0 | 1> => {
      const before = nodes.map((n) => connectLines(n, clientId).length);
      const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${front}`, {
        clientId,
        ca,
        servername: 'localhost',
        localAddress,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      } as mqtt.IClientOptions);
      await client.endAsync();
      let at: 0 | 1 | undefined;
      await eventually(() => {
        const grew = nodes.map((n, i) => connectLines(n, clientId).length > (before[i] as number));
        at = grew[0] ? 0 : grew[1] ? 1 : undefined;
        return at !== undefined;
      }, 5000, `a connect line for ${clientId}`);
      const line = connectLines(nodes[at as 0 | 1], clientId).at(-1);
      t.equal(line?.address, localAddress, `${clientId}: the node saw the client's own address, not HAProxy's`);
      return at as 0 | 1;
    };

    const home: Array<0 | 1> = [];
    for (let i = 0; i < 6; i++) home.push(await connectVia(`sticky-${i}`, `127.0.0.${10 + i}`));
    t.ok(home.includes(0) && home.includes(1), `different client ids spread over both nodes: ${home.join(',')}`);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 6; i++) t.equal(await connectVia(`sticky-${i}`, `127.0.0.${20 + i}`), home[i], `sticky-${i} sticks to its node`);
    }

    const rejected = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: front, ca, servername: 'localhost' }, () => s.write('GET / HTTP/1.0\r\n\r\n'));
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => resolve(got));
    });
    t.equal(rejected, '', 'HAProxy rejects a non-MQTT connection without an answer');
    t.notMatch(nodes.map((n) => n.output()).join(''), /GET \//, 'nothing of it reached a node');
  });
}
