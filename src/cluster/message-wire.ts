// The one encoding of a Message on a cluster link, used by forwards, retained replication and the
// takeover's handover buffer alike: the message's fields appended, in a fixed order, to the link
// message that carries them (flat and positional: no nested array and no field names per message).
import { Message } from '../broker/message.js';
import type { Properties, QoS } from '../mqtt/packets.js';
import type { LinkMessage } from './link.js';

/**
 * Appends the message to `out` (after what the carrier put first) and returns `out`:
 * topic, payload, qos, retain, properties|null, expiresAt, from, origin|null, originSeq|null.
 */
export function encodeMessage(m: Message, out: LinkMessage): LinkMessage {
  out.push(m.topic, m.payload, m.qos, m.retain, m.properties ?? null, m.expiresAt, m.from, m.origin ?? null, m.originSeq ?? null);
  return out;
}

/**
 * The message encoded at `at` in `w`. Its payload stays a view of the received frame
 * (`owned` false): whatever keeps it copies it, as for a message read from a socket.
 */
export function decodeMessage(w: LinkMessage, at: number): Message {
  const properties = w[at + 4] as Properties | null;
  const origin = w[at + 7] as string | null;
  const originSeq = w[at + 8] as number | null;
  return new Message(
    w[at] as string,
    w[at + 1] as Buffer,
    w[at + 2] as QoS,
    w[at + 3] as boolean,
    properties ?? undefined,
    w[at + 5] as number,
    w[at + 6] as string,
    false,
    origin ?? undefined,
    originSeq ?? undefined,
  );
}
