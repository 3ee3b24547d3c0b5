// Cluster links over mutual TLS (certificates made with openssl by the test): two nodes with
// certificates of the cluster CA link and carry messages; a node with a foreign certificate is
// refused even though it knows the cookie; one with a good certificate and a wrong cookie too;
// a plaintext peer gets nothing.

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import t from 'tap';
import { connectClient } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { makeCerts } from '../listeners/support.js';
import { address, countLines, linksUp, metric, probeLink, sleep, startCluster, waitFor } from './support.js';

const certs = await makeCerts(t);

function tlsEnv(cert: string, key: string): Record<string, string> {
  return {
    TIDEMQ_CLUSTER__TLS_CERT_FILE: cert,
    TIDEMQ_CLUSTER__TLS_KEY_FILE: key,
    TIDEMQ_CLUSTER__TLS_CA_FILE: certs.caCert,
    TIDEMQ_CLUSTER__TLS_VERIFY_PEER: 'true',
  };
}

t.test('mutual TLS between nodes: certificates of the cluster CA link, a foreign one does not', async (t) => {
  const [n1, n2] = await startCluster(t, 2, {
    each: [{ env: { ...tlsEnv(certs.serverCert, certs.serverKey), TIDEMQ_CLUSTER__MAX_PENDING_HANDSHAKES: '8' } }, { env: tlsEnv(certs.clientCert, certs.clientKey) }],
  });
  if (n1 === undefined || n2 === undefined) throw new Error('no cluster');
  const sub = await connectClient(t, n2.mqttPort, { clientId: 'tls-sub' });
  const got: string[] = [];
  sub.on('message', (_topic, payload) => got.push(payload.toString()));
  await sub.subscribeAsync('over/tls', { qos: 1 });
  const pub = await connectClient(t, n1.mqttPort, { clientId: 'tls-pub' });
  await waitFor('a message across the TLS link', async () => {
    await pub.publishAsync('over/tls', 'across', { qos: 1 });
    return got.includes('across');
  });
  t.pass('a QoS 1 message crossed the TLS link');

  // Knows the cookie (the default) and the CA certificate, but holds a certificate of its own.
  const rogue = await startNode(t, { args: ['--join', address(n1)], env: tlsEnv(certs.rogueCert, certs.rogueKey) });
  await waitFor('the foreign certificate refused', async () => (await metric(n1, 'tidemq_cluster_handshake_refusals_total', 'reason="tls"')) >= 1);
  // A good certificate, a wrong cookie.
  const wrongCookie = await startNode(t, { args: ['--join', address(n1), '--cookie', 'not-the-cluster-cookie'], env: tlsEnv(certs.clientCert, certs.clientKey) });
  await waitFor('the wrong cookie refused', async () => (await metric(n1, 'tidemq_cluster_handshake_refusals_total', 'reason="bad_cookie"')) >= 1);
  // A plaintext hello on the TLS port.
  const plain = await probeLink(t, n1.clusterPort);
  plain.send([['hello', 'plain@127.0.0.1', randomBytes(16), 'i', 'member', 2]]);
  await plain.closed;
  t.same(plain.frames, [], 'a plaintext peer gets no frame');
  // Silent TCP connections: TLS handshakes in progress hold handshake slots too, so past the cap
  // (8) the rest are turned away at once.
  const silent = await Promise.all(
    Array.from({ length: 12 }, async () => {
      const socket = connect({ host: '127.0.0.1', port: n1.clusterPort });
      t.teardown(() => socket.destroy());
      socket.on('error', () => {});
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      return socket;
    }),
  );
  await waitFor('connections past the cap refused', async () => (await metric(n1, 'tidemq_cluster_handshake_refusals_total', 'reason="too_many_pending"')) >= 4);
  t.pass('TCP connections past the cap were refused before any TLS work');
  for (const socket of silent) socket.destroy();
  await sleep(500);
  t.equal(countLines(rogue, /"msg":"cluster node up"/), 0, 'the node with a foreign certificate never linked');
  t.equal(countLines(wrongCookie, /"msg":"cluster node up"/), 0, 'the node with a wrong cookie never linked');
  t.equal(linksUp(n1), 1, 'n1 is still linked to n2 only');
  t.equal(countLines(n1, /"level":50/), 0, 'no error logged on n1 for the strangers');
});
