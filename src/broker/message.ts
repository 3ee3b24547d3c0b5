import type { Properties, QoS } from '../mqtt/packets.js';

/**
 * An application message as the broker routes, queues and stores it. `properties` are the
 * PUBLISH properties that travel with the message (never Topic Alias or Subscription
 * Identifier, which belong to one hop). `payload` is a view of the received bytes while the
 * message is routed; anything that keeps it longer (queues, retained) keeps its own copy. The
 * constructor sets every field, so every message has one shape.
 */
export class Message {
  constructor(
    readonly topic: string,
    public payload: Buffer,
    readonly qos: QoS,
    readonly retain: boolean,
    readonly properties: Properties | undefined,
    /** Absolute ms when the Message Expiry Interval runs out, 0 for never. */
    readonly expiresAt: number,
    /** Client id of the publisher, for No Local. */
    readonly from: string,
    /** Whether `payload` is the message's own copy rather than a view of a socket chunk. */
    public owned: boolean,
    /** Cluster-wide identity (publishing node, its counter), set only when a cluster runs: a
     *  takeover drops the copies that reached both the old and the new node. */
    public origin: string | undefined = undefined,
    public originSeq: number | undefined = undefined,
  ) {}
}

/**
 * Gives the message its own copy of the payload, once, before anything keeps it beyond the
 * current routing pass (offline queues, retained), so it does not pin a whole socket chunk.
 */
export function ownPayload(message: Message): void {
  if (message.owned) return;
  message.payload = Buffer.from(message.payload);
  message.owned = true;
}

/**
 * The properties to send with a message at `now`: the Message Expiry Interval is lowered to the
 * time left [MQTT-3.3.2-6]. Returns null when the message has expired [MQTT-3.3.2-5].
 */
export function outgoingProperties(message: Message, now: number): Properties | undefined | null {
  if (message.expiresAt === 0) return message.properties;
  const left = Math.ceil((message.expiresAt - now) / 1000);
  if (left <= 0) return null;
  return { ...message.properties, messageExpiryInterval: left };
}
