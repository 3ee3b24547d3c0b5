// The MQTT/TLS listener: node:tls over the same accept path as TCP (gate, optional PROXY header),
// then the same TCP I/O owner once the handshake is done.
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Broker } from './broker.js';
import { TcpConnection } from './tcp-connection.js';
import { listenStream, releaseGate, type ListenerGate } from './tcp-listener.js';

/** The listener's TLS settings, files read once at start (a bad file fails the start). */
function tlsServerOptions(broker: Broker): tls.TlsOptions {
  const l = broker.config.listeners;
  return {
    cert: readFileSync(l.tls_cert_file),
    key: readFileSync(l.tls_key_file),
    ...(l.tls_ca_file === '' ? {} : { ca: readFileSync(l.tls_ca_file) }),
    minVersion: 'TLSv1.2',
    requestCert: l.tls_verify_peer,
    rejectUnauthorized: true,
    // A handshake gets as long as a CONNECT would.
    handshakeTimeout: broker.config.mqtt.idle_timeout * 1000,
  };
}

/** The CN of a verified client certificate (the first one when the subject has several). */
function peerCommonName(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cn: unknown = socket.getPeerCertificate().subject?.CN;
  if (Array.isArray(cn)) return typeof cn[0] === 'string' ? cn[0] : undefined;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}

function connectionKey(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

export async function listenTls(broker: Broker, gate: ListenerGate, host: string, port: number): Promise<net.Server> {
  const cnAsUsername = broker.config.listeners.tls_cn_as_username;
  const tlsServer = tls.createServer(tlsServerOptions(broker));
  // PROXY addresses of handshakes in progress, by the TCP connection's own address and port
  // (the TLS socket reports the same pair); bounded by the listener's live connections.
  const proxied = new Map<string, string>();
  tlsServer.on('secureConnection', (socket: TLSSocket) => {
    let address: string | undefined;
    if (proxied.size > 0) {
      const key = connectionKey(socket);
      address = proxied.get(key);
      proxied.delete(key);
    }
    new TcpConnection(socket, broker, address, cnAsUsername ? peerCommonName(socket) : undefined);
  });
  tlsServer.on('tlsClientError', (err, socket) => {
    // Failed or timed-out handshakes, refused client certificates: this connection only.
    broker.log.debug({ listener: gate.name, address: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
    socket.destroy();
  });
  return listenStream(broker, gate, host, port, (socket, address, early) => {
    socket.on('close', releaseGate); // the raw socket holds the gate, not the TLSSocket
    if (address !== undefined) {
      const key = connectionKey(socket);
      proxied.set(key, address);
      socket.once('close', () => proxied.delete(key));
    }
    // Bytes behind a PROXY header are the start of the handshake: node:tls reads what the
    // socket has buffered before reading on.
    if (early !== undefined) socket.unshift(early);
    tlsServer.emit('connection', socket);
  });
}
