import net, { type Socket } from 'node:net';
import type { Broker } from './broker.js';
import { LimitHit } from './stats.js';
import { parseProxyHeader, ProxyHeaderError } from './proxy-protocol.js';
import { TcpConnection } from './tcp-connection.js';
import { WheelTimer } from './timer-wheel.js';
import { TokenBucket } from './token-bucket.js';

export type ListenerName = 'tcp' | 'tls' | 'ws' | 'wss';

/** One listener's accept outcomes, read by the metrics module under a `listener` label. */
export interface ListenerStats {
  /** Connections admitted and not yet closed, handshakes and PROXY headers in progress included. */
  live: number;
  accepted: number;
  rateLimited: number;
  maxConnections: number;
  /** Refused for a missing, bad or late PROXY header, or (WebSocket) a bad upgrade request. */
  refused: number;
  /** Accepts that failed for want of a file descriptor (EMFILE, ENFILE). */
  emfile: number;
  /** Refused because the node's bytes before CONNACK were over mqtt.max_connecting_bytes. */
  connectingBytes: number;
  /** False while paused by listeners.stop_accepting_on_evacuation (accept-switch.ts). */
  accepting: boolean;
}

/** Out-of-descriptor accept failures are logged at most once per this interval. */
export const EMFILE_LOG_INTERVAL_MS = 10_000;

/**
 * A listener's accept limits: the node-wide max_connections, this listener's own cap (0: none)
 * and its connection rate (mqtt.max_conn_rate, one bucket per listener). Over a limit the
 * connection is closed at once and counted: the cheapest refusal, and it keeps the accept queue
 * moving.
 */
export class ListenerGate {
  readonly stats: ListenerStats = { live: 0, accepted: 0, rateLimited: 0, maxConnections: 0, refused: 0, emfile: 0, connectingBytes: 0, accepting: true };
  private readonly bucket: TokenBucket | null;
  private emfileLoggedAt = -Infinity;
  private emfileUnlogged = 0;

  constructor(
    readonly name: ListenerName,
    private readonly broker: Broker,
    private readonly maxConnections: number,
  ) {
    const mqtt = broker.config.mqtt;
    this.bucket = mqtt.max_conn_rate > 0 ? new TokenBucket(mqtt.max_conn_rate, Math.max(1, mqtt.max_conn_burst)) : null;
  }

  /** Admits one new connection (counted live until release()), or counts why not. */
  admit(): boolean {
    const stats = this.broker.stats;
    if (stats.connectionsLive >= this.broker.config.mqtt.max_connections || (this.maxConnections > 0 && this.stats.live >= this.maxConnections)) {
      stats.acceptMaxConnections++;
      this.stats.maxConnections++;
      return false;
    }
    if (stats.connectingBytes >= this.broker.config.mqtt.max_connecting_bytes) {
      // Connections that have not completed CONNECT hold the node's whole pre-CONNACK budget.
      this.stats.connectingBytes++;
      stats.hitLimit(LimitHit.ConnectingBytes, '', 0);
      return false;
    }
    if (this.bucket !== null && !this.bucket.tryTake()) {
      stats.acceptRateLimited++;
      this.stats.rateLimited++;
      return false;
    }
    this.stats.live++;
    this.stats.accepted++;
    return true;
  }

  release(): void {
    this.stats.live--;
  }

  /**
   * An error of the listening socket; the server keeps listening. Out of file descriptors, libuv
   * mostly closes the pending connections itself through a reserved descriptor and tells no one
   * (the open-fds vs max-fds gauges show that state); an EMFILE/ENFILE that does reach us is
   * counted, and logged once per interval with how many failed since the last line.
   */
  serverError(err: NodeJS.ErrnoException): void {
    if (err.code !== 'EMFILE' && err.code !== 'ENFILE') {
      this.broker.log.error({ err, listener: this.name }, 'MQTT listener error');
      return;
    }
    this.stats.emfile++;
    this.emfileUnlogged++;
    const now = Date.now();
    if (now - this.emfileLoggedAt < EMFILE_LOG_INTERVAL_MS) return;
    this.emfileLoggedAt = now;
    this.broker.log.error(
      { listener: this.name, code: err.code, failed: this.emfileUnlogged, next_log_in_s: EMFILE_LOG_INTERVAL_MS / 1000 },
      'out of file descriptors: connections closed at accept (raise the open-file limit or lower max_connections)',
    );
    this.emfileUnlogged = 0;
  }

  /** A connection refused after admission (bad PROXY header, bad upgrade): counted and logged. */
  refuse(address: string | undefined, why: string): void {
    this.stats.refused++;
    this.broker.log.debug({ listener: this.name, address, why }, 'connection refused');
  }
}

/**
 * What becomes of an admitted socket: `address` is the client's address from a PROXY header
 * (undefined without one), `early` the client bytes that arrived behind the header. The new owner
 * releases the listener's gate when the socket closes (releaseGate, or its own 'close' handler:
 * one listener set per socket).
 */
export type StreamHandoff = (socket: Socket, address: string | undefined, early: Buffer | undefined) => void;

export interface GatedSocket extends Socket {
  tidemqGate: ListenerGate;
}

interface PendingSocket extends GatedSocket {
  tidemqProxy: PendingProxy;
}

/** A socket whose PROXY header has not fully arrived, under the header deadline. */
interface PendingProxy {
  buffered: Buffer | undefined;
  readonly timer: WheelTimer;
  readonly broker: Broker;
  readonly handoff: StreamHandoff;
}

export function releaseGate(this: GatedSocket): void {
  this.tidemqGate.release();
}

function ignoreError(): void {
  // ECONNRESET and friends before the connection's owner exists: 'close' does the bookkeeping.
}

function onProxyData(this: PendingSocket, chunk: Buffer): void {
  const pending = this.tidemqProxy;
  const buf = pending.buffered === undefined ? chunk : Buffer.concat([pending.buffered, chunk]);
  let header;
  try {
    header = parseProxyHeader(buf);
  } catch (err) {
    if (!(err instanceof ProxyHeaderError)) throw err;
    refuseProxy(this, err.message);
    return;
  }
  if (header === null) {
    pending.buffered = buf;
    return;
  }
  pending.broker.wheel.cancel(pending.timer);
  this.off('data', onProxyData);
  this.off('close', onPendingClose);
  this.off('close', releaseGate); // the owner releases it from now on
  // Paused, so bytes handed back with unshift() wait for the next owner instead of being emitted.
  this.pause();
  pending.handoff(this, header.address, header.length < buf.length ? buf.subarray(header.length) : undefined);
}

function onPendingClose(this: PendingSocket): void {
  this.tidemqProxy.broker.wheel.cancel(this.tidemqProxy.timer);
}

function refuseProxy(socket: PendingSocket, why: string): void {
  socket.tidemqProxy.broker.wheel.cancel(socket.tidemqProxy.timer);
  socket.tidemqGate.refuse(socket.remoteAddress, why);
  socket.destroy();
}

function proxyHeaderLate(socket: PendingSocket): void {
  refuseProxy(socket, 'no PROXY header within proxy_header_timeout');
}

/** With proxy_protocol on, nothing but a valid PROXY header within the deadline gets through. */
function awaitProxyHeader(socket: GatedSocket, broker: Broker, handoff: StreamHandoff): void {
  const pendingSocket = socket as PendingSocket;
  const timer = new WheelTimer(pendingSocket, proxyHeaderLate);
  pendingSocket.tidemqProxy = { buffered: undefined, timer, broker, handoff };
  broker.wheel.schedule(timer, Date.now() + broker.config.listeners.proxy_header_timeout * 1000);
  socket.on('error', ignoreError);
  socket.on('close', onPendingClose);
  socket.on('data', onProxyData);
}

/** The accept queue of a stream listener (SOMAXCONN caps it). */
export const STREAM_BACKLOG = 4096;

export interface ListenOptions {
  /** A port of this process's own, also in a `start --nodes` member (node:cluster workers share
   *  their primary's sockets otherwise). */
  exclusive?: boolean;
}

/**
 * A stream listener (TCP, and TLS before its handshake): admission by the gate, then the PROXY
 * header when proxy_protocol is on, then `handoff`. Without PROXY the accepted socket goes
 * straight to its owner, with nothing added on its data path.
 */
export async function listenStream(broker: Broker, gate: ListenerGate, host: string, port: number, handoff: StreamHandoff, options: ListenOptions = {}): Promise<net.Server> {
  const proxy = broker.config.listeners.proxy_protocol;
  const server = net.createServer({ noDelay: true }, (socket) => {
    if (!gate.admit()) {
      socket.destroy();
      return;
    }
    (socket as GatedSocket).tidemqGate = gate;
    if (proxy) {
      socket.on('close', releaseGate);
      awaitProxyHeader(socket as GatedSocket, broker, handoff);
    } else handoff(socket, undefined, undefined);
  });
  server.on('error', (err) => gate.serverError(err));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: STREAM_BACKLOG, exclusive: options.exclusive ?? false }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** The MQTT/TCP listener. */
export function listenTcp(broker: Broker, gate: ListenerGate, host: string, port: number, options: ListenOptions = {}): Promise<net.Server> {
  const handoff: StreamHandoff = (socket, address, early) => {
    const conn = new TcpConnection(socket, broker, address);
    if (early !== undefined) conn.protocol.receive(early);
    // Paused for its PROXY header: it flows again now that its owner listens (unless the early
    // bytes were a CONNECT that now waits for its verdict with reading paused).
    if (socket.isPaused() && !conn.readPaused) socket.resume();
  };
  return listenStream(broker, gate, host, port, handoff, options);
}
