// The connect path compiled before the first client arrives. A node restarted during a rolling
// upgrade or an evacuation meets its clients' reconnect storm at once; without this its first
// thousands of CONNECTs run through V8's interpreter while the optimizing compiler catches up,
// and CONNACK latency spikes exactly then. The cycles run over loopback TCP, so Node's own accept,
// socket, stream and close code is compiled too, not only tidemq's: measured, that is most of a
// cold node's extra cost in its first 15 000 connections. A scratch broker (in memory, anonymous,
// no cluster, no store, its own counters) on its own port takes the CONNECTs through the same
// listener and protocol code the node's clients use; nothing of it is kept.
import net from 'node:net';
import { pino } from 'pino';
import type { Config } from '../config/schema.js';
import { encodePacket } from '../mqtt/encode.js';
import { PacketType, type ProtocolVersion } from '../mqtt/packets.js';
import { loadAcl } from './acl.js';
import { createAuthenticator } from './auth.js';
import { Broker } from './broker.js';
import { ListenerGate, listenTcp } from './tcp-listener.js';
import { TimerWheel, WHEEL_TICK_MS } from './timer-wheel.js';

/** Cycles enough for V8 to optimize the connect path, Node's socket code included (about 250 ms
 *  on one core of the 2-core machine). */
const WARM_UP_CYCLES = 1000;
/** Connections in their handshake at once: enough to keep both ends busy. */
const IN_FLIGHT = 32;
/**
 * The first cycles run one at a time. V8 sizes the objects of a constructor by the first few it
 * makes (slack tracking): were those all client sockets, the two properties a broker socket gets
 * (tcp-connection.ts, tcp-listener.ts) would not fit in the Socket object, and every connection
 * would carry an extra property array (40 bytes, measured with a heap snapshot).
 */
const ALONE = 8;
/** A warm-up not done by then (a host under load) is cut short: better a cold node than a late one. */
const WARM_UP_DEADLINE_MS = 5000;

export interface WarmUpResult {
  /** The scratch listener's port (0 when it could not listen). */
  port: number;
  cycles: number;
  /** CONNECTs answered with an accepting CONNACK (all of them, unless something failed). */
  accepted: number;
  ms: number;
}

/** `config`'s protocol settings, without what would refuse the scratch clients or hold them up. */
function scratchConfig(config: Config): Config {
  return {
    ...config,
    auth: { ...config.auth, password_file: '', acl_file: '', allow_anonymous: true },
    listeners: { ...config.listeners, proxy_protocol: false },
    mqtt: { ...config.mqtt, max_connections: Number.MAX_SAFE_INTEGER, max_conn_rate: 0, max_connecting_bytes: Number.MAX_SAFE_INTEGER, close_linger: 0 },
  };
}

/**
 * Runs `cycles` CONNECT / CONNACK / close cycles (3.1.1 and 5.0; a DISCONNECT or the client
 * closing) from in-process clients to a scratch broker listening on a loopback port of its own
 * (exclusive: in a `start --nodes` member it is not the shared port). Resolves once every socket
 * of it is closed: after its cycles, or at `deadlineMs` (those in flight are reset then); a listen
 * that fails (no loopback) resolves with nothing accepted: the node then starts cold.
 */
export async function warmConnectPath(config: Config, cycles = WARM_UP_CYCLES, deadlineMs = WARM_UP_DEADLINE_MS): Promise<WarmUpResult> {
  const start = Date.now();
  const scratch = scratchConfig(config);
  const log = pino({ level: 'silent' });
  // The node's tick, so the deadline arithmetic is trained on the numbers the node's will see (at
  // 1000 ms, ms / tick fits a small integer where at 250 ms it is a double: measured, a deopt).
  const broker = new Broker(scratch, new TimerWheel(WHEEL_TICK_MS), createAuthenticator(scratch.auth, log), loadAcl(scratch.auth), log, null);
  let server: net.Server;
  try {
    server = await listenTcp(broker, new ListenerGate('tcp', broker, 0), '127.0.0.1', 0, { exclusive: true });
  } catch {
    return { port: 0, cycles: 0, accepted: 0, ms: Date.now() - start };
  }
  const port = (server.address() as net.AddressInfo).port;
  const disconnect = encodePacket({ type: PacketType.DISCONNECT, reasonCode: 0 }, 4);
  const open = new Set<net.Socket>();
  let started = 0;
  let last = cycles; // lowered to `started` at the deadline: no new cycle after it
  let accepted = 0;
  let allClosed = (): void => {};
  const closed = new Promise<void>((resolve) => (allClosed = resolve));
  const next = (): void => {
    while (open.size < (started < ALONE ? 1 : IN_FLIGHT) && started < last) {
      const i = started++;
      // As clients send it: clean, keepalive 60, no properties; one in four 5.0.
      const version: ProtocolVersion = i % 4 === 0 ? 5 : 4;
      const connect = encodePacket({ type: PacketType.CONNECT, protocolName: 'MQTT', protocolVersion: version, cleanStart: true, keepalive: 60, clientId: `warm-up-${i}` }, version);
      const socket = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => socket.write(connect));
      open.add(socket);
      socket.once('data', (connack: Buffer) => {
        // CONNACK's return code (3.1.1) or reason code (5.0) is its fourth byte: 0 accepts.
        if (connack[0] === 0x20 && connack[3] === 0) accepted++;
        // No client port may linger in TIME_WAIT (60 s): a later listen on it (a port in the
        // ephemeral range, a sibling's or a restarted member's) would fail with EADDRINUSE. After
        // a DISCONNECT the broker closes first, so the wait is on the scratch port; otherwise RST.
        if (i % 2 === 0) socket.write(disconnect);
        else socket.resetAndDestroy();
      });
      socket.on('error', () => socket.destroy());
      socket.once('close', () => {
        open.delete(socket);
        next();
      });
    }
    if (open.size === 0) allClosed(); // every cycle done, or cut short and every socket closed
  };
  const deadline = setTimeout(() => {
    last = started;
    for (const socket of open) socket.resetAndDestroy();
  }, deadlineMs);
  next();
  await closed;
  clearTimeout(deadline);
  // Once the broker's ends have closed too (they follow their clients').
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { port, cycles: started, accepted, ms: Date.now() - start };
}
