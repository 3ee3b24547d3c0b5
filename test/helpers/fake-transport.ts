// A Transport for driving the protocol state machine in-process: what is written is decoded by
// mqtt-packet (an encoder independent of ours), and the test sets the output backlog.
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { Transport } from '../../src/broker/protocol.js';

/** A Transport that decodes everything written to it. */
export class FakeTransport implements Transport {
  readonly packets: Packet[] = [];
  ended = false;
  readonly remoteAddress = '127.0.0.1';
  /** Unsent output bytes, as a test sets them (a client that does not read). */
  backlog = 0;
  private readonly parser;

  constructor(protocolVersion: 3 | 4 | 5) {
    this.parser = mqttPacket.parser({ protocolVersion });
    this.parser.on('packet', (p: Packet) => this.packets.push(p));
    this.parser.on('error', (e: Error) => {
      throw e;
    });
  }

  /** Output kept by hold() until release(), by reference as a corked socket keeps it; null when not held. */
  held: Buffer[] | null = null;

  write(buf: Buffer): void {
    if (this.held !== null) this.held.push(buf);
    else this.parser.parse(buf);
  }

  writePublish(header: Buffer, payload: Buffer): void {
    this.write(Buffer.concat([header, payload]));
  }

  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const buf of held) this.parser.parse(buf);
  }

  destroyed = false;

  end(): void {
    this.ended = true;
  }

  destroy(): void {
    this.ended = true;
    this.destroyed = true;
  }

  paused = false;

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** Packets written since the last take(). */
  take(): Packet[] {
    return this.packets.splice(0);
  }
}
