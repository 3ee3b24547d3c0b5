// MQTT over WebSocket and WSS on uWebSockets.js: the only module that touches uWS. The upgrade
// checks path, subprotocol, PROXY address and the listener's limits; after it, each WebSocket is
// a Transport for the same protocol state machine as TCP. MQTT frames may span or share
// WebSocket messages: the protocol's frame reader takes the messages as a byte stream.
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp, type us_listen_socket, type us_socket_context_t, type WebSocket } from '@trufflesuite/uws-js-unofficial';
import type { Broker } from './broker.js';
import { Protocol, type Transport } from './protocol.js';
import { LimitHit } from './stats.js';
import type { ListenerGate } from './tcp-listener.js';

/** The MQTT subprotocol names, in our order of preference [MQTT-6.0.0-3]. */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'] as const;
/** A frame's fixed header (type byte and up to 4 length bytes) on top of the packet-size limit. */
const FIXED_HEADER_MAX = 5;

interface WsData {
  address: string;
  conn: WsConnection | undefined;
}

export interface WsServer {
  readonly port: number;
  /** Stops accepting; open WebSockets are the broker's to close. */
  close(): void;
  /** Stops accepting for now (listeners.stop_accepting_on_evacuation); open WebSockets stay. */
  pause(): void;
  /** Accepts again on the same port. */
  resume(): Promise<void>;
}

const flushQueue: WsConnection[] = [];
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  for (const c of flushQueue) c.flush();
  flushQueue.length = 0;
}

/** The linger of an ended WebSocket ran out: the client read our last packet, or had 1 s to. */
function closeLingered(conn: WsConnection): void {
  if (conn.closed) return;
  conn.broker.stats.hitLimit(LimitHit.CloseLinger, conn.protocol.clientId, 0);
  conn.closeNow();
}

/** One WebSocket's I/O owner. Writes of one event-loop turn leave as one binary message. */
class WsConnection implements Transport {
  readonly protocol: Protocol;
  closed = false;
  /** end() was called: the last packet is out, the close frame waits for the linger. */
  private ending = false;
  /** Output held (hold()): flush() keeps it until release(). */
  private held = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly ws: WebSocket<WsData>,
    readonly broker: Broker,
    readonly remoteAddress: string,
  ) {
    broker.stats.connectionsLive++;
    broker.stats.connectionsTotal++;
    this.protocol = new Protocol(broker, this, Date.now());
  }

  get backlog(): number {
    return this.closed ? 0 : this.pendingBytes + this.ws.getBufferedAmount();
  }

  write(buf: Buffer): void {
    this.queue(buf);
  }

  writePublish(header: Buffer, payload: Buffer): void {
    this.queue(header);
    if (payload.length > 0) this.queue(payload);
  }

  /**
   * Flushes, then waits up to mqtt.close_linger for the client to close before sending the close
   * frame, as TCP's end() does: uWS answers input after its close frame with a reset once its own
   * closing timeout passes, so a client still sending acks would lose our DISCONNECT (or refusing
   * CONNACK). What arrives meanwhile is discarded (the protocol is closed).
   */
  end(): void {
    if (this.closed || this.ending) return;
    this.held = false;
    this.flush();
    if (this.closed) return;
    const linger = this.broker.config.mqtt.close_linger;
    if (linger === 0) return this.closeNow();
    this.ending = true;
    setTimeout(closeLingered, linger * 1000, this).unref();
  }

  /** The closing handshake now; the close handler runs inside ws.end() and marks us closed. */
  closeNow(): void {
    if (!this.closed) this.ws.end(1000);
  }

  destroy(): void {
    if (this.closed) return;
    this.pending = [];
    this.pendingBytes = 0;
    this.ws.close();
  }

  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.flush();
  }

  // uWS cannot stop reading one WebSocket: what arrives before CONNACK is bounded by
  // mqtt.max_pending_bytes instead (the protocol closes the connection past it).
  pause(): void {}

  resume(): void {}

  flush(): void {
    if (this.pendingBytes === 0 || this.closed || this.held) return;
    const pending = this.pending;
    const message = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    // Over the buffered bound uWS drops the message and, with closeOnBackpressureLimit, closes
    // the WebSocket: a stream with a hole in it is no MQTT stream.
    this.ws.send(message, true, false);
  }

  private queue(buf: Buffer): void {
    if (this.closed) return;
    if (this.pendingBytes === 0) {
      flushQueue.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        process.nextTick(flushAll);
      }
    }
    this.pending.push(buf);
    this.pendingBytes += buf.length;
  }
}

function text(address: ArrayBuffer): string {
  return Buffer.from(address).toString('latin1');
}

/** The first offered subprotocol we speak, from `Sec-WebSocket-Protocol: a, b`. */
function pickSubprotocol(header: string): string | undefined {
  for (const offered of header.split(',')) {
    const name = offered.trim();
    if ((SUBPROTOCOLS as readonly string[]).includes(name)) return name;
  }
  return undefined;
}

function refuse(res: HttpResponse, status: string, body: string): void {
  res.writeStatus(status).writeHeader('Connection', 'close').end(body, true);
}

/** The WebSocket (`tls` false) or WSS listener on `host:port`, MQTT at listeners.ws_path. */
export async function listenWs(broker: Broker, gate: ListenerGate, host: string, port: number, tls: boolean): Promise<WsServer> {
  const l = broker.config.listeners;
  const mqtt = broker.config.mqtt;
  const proxy = l.proxy_protocol;
  const app: TemplatedApp = tls
    ? uWS.SSLApp({ cert_file_name: l.tls_cert_file, key_file_name: l.tls_key_file, ...(l.tls_ca_file === '' ? {} : { ca_file_name: l.tls_ca_file }) })
    : uWS.App();

  app.ws<WsData>(l.ws_path, {
    compression: uWS.DISABLED,
    maxPayloadLength: Math.max(mqtt.max_packet_size, mqtt.max_connect_size) + FIXED_HEADER_MAX,
    // The output bound is the protocol's (mqtt.max_output_buffer: QoS 0 dropped past it, the
    // slow-consumer timeout); this hard stop at twice it closes a WebSocket that outruns both.
    maxBackpressure: 2 * mqtt.max_output_buffer + mqtt.max_packet_size,
    closeOnBackpressureLimit: 1,
    // Keepalive and the CONNECT deadline are the protocol's, on the shared timer wheel.
    idleTimeout: 0,
    sendPingsAutomatically: false,

    upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      // uWS strips a PROXY v2 header whatever the setting; its address counts only when enabled.
      const address = text(proxy ? res.getProxiedRemoteAddressAsText() : res.getRemoteAddressAsText());
      if (proxy && address === '') {
        gate.refuse(text(res.getRemoteAddressAsText()), 'no PROXY v2 header');
        refuse(res, '400 Bad Request', 'PROXY protocol v2 header required\n');
        return;
      }
      const subprotocol = pickSubprotocol(req.getHeader('sec-websocket-protocol'));
      if (subprotocol === undefined) {
        gate.refuse(address, 'no mqtt subprotocol');
        refuse(res, '400 Bad Request', 'MQTT over WebSocket needs the subprotocol mqtt or mqttv3.1\n');
        return;
      }
      if (!gate.admit()) {
        refuse(res, '503 Service Unavailable', 'connection limit\n');
        return;
      }
      res.upgrade<WsData>(
        { address, conn: undefined },
        req.getHeader('sec-websocket-key'),
        subprotocol,
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },

    open(ws: WebSocket<WsData>) {
      const data = ws.getUserData();
      data.conn = new WsConnection(ws, broker, data.address);
    },

    message(ws: WebSocket<WsData>, message: ArrayBuffer, isBinary: boolean) {
      const conn = ws.getUserData().conn as WsConnection;
      if (!isBinary) {
        ws.end(1003, 'MQTT needs binary frames'); // [MQTT-6.0.0-1]
        return;
      }
      // A copy: uWS reuses the ArrayBuffer after we return, and PUBLISH payloads are views of it.
      conn.protocol.receive(Buffer.from(new Uint8Array(message)));
    },

    // uWS calls this as the WebSocket's buffered output goes down: deliveries held back while
    // it was congested can go now, as on TCP's 'drain'.
    drain(ws: WebSocket<WsData>) {
      ws.getUserData().conn?.protocol.drained();
    },

    close(ws: WebSocket<WsData>) {
      const conn = ws.getUserData().conn;
      gate.release();
      if (conn === undefined) return;
      conn.closed = true;
      broker.stats.connectionsLive--;
      conn.protocol.transportClosed();
    },
  });
  app.any('/*', (res: HttpResponse) => {
    res.writeStatus('404 Not Found').end(`MQTT over WebSocket is at ${l.ws_path}\n`);
  });

  // uWS binds with SO_REUSEPORT on Linux (its default; LIBUS_LISTEN_EXCLUSIVE_PORT would turn it
  // off): the nodes of `tidemq start --nodes N` each bind the WebSocket port and the kernel spreads
  // the connections over them. Closing one node's socket drops what waits in its own accept queue.
  const listen = (at: number): Promise<us_listen_socket> =>
    new Promise<us_listen_socket>((resolve, reject) => {
      app.listen(host, at, (ls) => {
        if (ls === false) reject(new Error(`cannot listen for MQTT/${gate.name.toUpperCase()} on ${host}:${at}`));
        else resolve(ls);
      });
    });
  let listenSocket: us_listen_socket | null = await listen(port);
  const bound = uWS.us_socket_local_port(listenSocket);
  const stop = (): void => {
    if (listenSocket !== null) uWS.us_listen_socket_close(listenSocket);
    listenSocket = null;
  };
  return {
    port: bound,
    close: stop,
    pause: stop,
    resume: async () => {
      listenSocket ??= await listen(bound);
    },
  };
}
