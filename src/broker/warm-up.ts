// The connect path compiled before the first client arrives. A node restarted during a rolling
// upgrade or an evacuation meets its clients' reconnect storm at once; without this its first
// thousands of CONNECTs run through V8's interpreter while the optimizing compiler catches up,
// and CONNACK latency spikes exactly then. A scratch broker (in memory, anonymous, no cluster,
// no store, its own counters) takes CONNECT and close cycles through the same code the
// listeners' clients use; nothing of it is kept.
import { pino } from 'pino';
import type { Config } from '../config/schema.js';
import { loadAcl } from './acl.js';
import { createAuthenticator } from './auth.js';
import { Broker } from './broker.js';
import { Protocol, type Transport } from './protocol.js';
import { TimerWheel } from './timer-wheel.js';

/** Cycles enough for V8 to optimize the connect path's functions (about 20 ms on one core). */
export const WARM_UP_CYCLES = 4000;

const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** A CONNECT as clients send it: clean session, keepalive 60, the given id; 5.0 with no properties. */
function connectPacket(clientId: string, version: 4 | 5): Buffer {
  const id = Buffer.from(clientId);
  const variable = [0, 4, 0x4d, 0x51, 0x54, 0x54, version, 0x02, 0, 60, ...(version === 5 ? [0] : [])];
  const length = variable.length + 2 + id.length; // < 128: a one-byte remaining length
  return Buffer.concat([Buffer.from([0x10, length, ...variable, id.length >> 8, id.length & 0xff]), id]);
}

/** Discards what it is given; notes whether the first packet was an accepting CONNACK. */
class ScratchTransport implements Transport {
  readonly remoteAddress = '127.0.0.1';
  readonly backlog = 0;
  accepted = false;
  private written = 0;

  write(buf: Buffer): void {
    // CONNACK's return code (3.1.1) or reason code (5.0) is its fourth byte: 0 accepts.
    if (this.written === 0 && buf[0] === 0x20 && buf[3] === 0) this.accepted = true;
    this.written += buf.length;
  }

  writeNow(buf: Buffer): void {
    this.write(buf);
  }

  writePublish(header: Buffer, payload: Buffer): void {
    this.written += header.length + payload.length;
  }

  end(): void {}

  destroy(): void {}

  pause(): void {}

  resume(): void {}
}

/**
 * Runs `cycles` CONNECT / CONNACK / close cycles (3.1.1 and 5.0; a DISCONNECT or the transport
 * closing) on a scratch broker with `config`'s protocol settings. Returns how many CONNECTs were
 * accepted (all of them, unless the configuration refuses such clients).
 */
export function warmConnectPath(config: Config, cycles = WARM_UP_CYCLES): number {
  const scratchConfig: Config = { ...config, auth: { ...config.auth, password_file: '', acl_file: '', allow_anonymous: true } };
  const log = pino({ level: 'silent' });
  const broker = new Broker(scratchConfig, new TimerWheel(1000), createAuthenticator(scratchConfig.auth, log), loadAcl(scratchConfig.auth), log, null);
  let accepted = 0;
  const now = Date.now();
  for (let i = 0; i < cycles; i++) {
    const transport = new ScratchTransport();
    const protocol = new Protocol(broker, transport, now);
    protocol.receive(connectPacket(`warm-up-${i}`, i % 4 === 0 ? 5 : 4));
    if (i % 2 === 0) protocol.receive(DISCONNECT);
    else protocol.transportClosed();
    if (transport.accepted) accepted++;
  }
  return accepted;
}
