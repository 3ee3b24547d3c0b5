// The connect path compiled before the first client arrives. A node restarted during a rolling
// upgrade or an evacuation meets its clients' reconnect storm at once; without this its first
// thousands of CONNECTs run through V8's interpreter while the optimizing compiler catches up,
// and CONNACK latency spikes exactly then. A scratch broker (in memory, anonymous, no cluster,
// no store, its own counters) takes CONNECT and close cycles through the same code the
// listeners' clients use; nothing of it is kept.
import { pino } from 'pino';
import type { Config } from '../config/schema.js';
import { encodePacket } from '../mqtt/encode.js';
import { PacketType } from '../mqtt/packets.js';
import { loadAcl } from './acl.js';
import { createAuthenticator } from './auth.js';
import { Broker } from './broker.js';
import { Protocol, type Transport } from './protocol.js';
import { TimerWheel } from './timer-wheel.js';

/** Cycles enough for V8 to optimize the connect path's functions (about 30 ms on one core). */
export const WARM_UP_CYCLES = 4000;

/** Discards what it is given; notes whether the first packet was an accepting CONNACK. */
class ScratchTransport implements Transport {
  readonly remoteAddress = '127.0.0.1';
  readonly backlog = 0;
  accepted = false;
  private answered = false;

  write(buf: Buffer): void {
    // CONNACK's return code (3.1.1) or reason code (5.0) is its fourth byte: 0 accepts.
    if (!this.answered) this.accepted = buf[0] === 0x20 && buf[3] === 0;
    this.answered = true;
  }

  writeNow(buf: Buffer): void {
    this.write(buf);
  }

  writePublish(): void {}

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
  const disconnect = encodePacket({ type: PacketType.DISCONNECT, reasonCode: 0 }, 4);
  let accepted = 0;
  const now = Date.now();
  for (let i = 0; i < cycles; i++) {
    const version = i % 4 === 0 ? 5 : 4;
    const transport = new ScratchTransport();
    const protocol = new Protocol(broker, transport, now);
    // A CONNECT as clients send it: clean, keepalive 60, no properties.
    protocol.receive(encodePacket({ type: PacketType.CONNECT, protocolName: 'MQTT', protocolVersion: version, cleanStart: true, keepalive: 60, clientId: `warm-up-${i}` }, version));
    if (i % 2 === 0) protocol.receive(disconnect);
    else protocol.transportClosed();
    if (transport.accepted) accepted++;
  }
  return accepted;
}
