import type { Config } from '../config/schema.js';
import { encodePacket } from '../mqtt/encode.js';
import { PacketType, type Properties, type ProtocolVersion } from '../mqtt/packets.js';

/**
 * Successful CONNACKs for one configuration: the common ones built once, since every connection
 * sends one; the 5.0 properties tell the client our limits and what we do not support.
 */
export class Connacks {
  /** [3.1, 3.1.1 no session, 3.1.1 session, 5.0 no session, 5.0 session]. */
  private readonly built: Buffer[];
  private readonly properties: Properties;

  constructor(mqtt: Config['mqtt']) {
    const p: Properties = {};
    if (mqtt.max_inflight < 65535) p.receiveMaximum = mqtt.max_inflight;
    p.maximumPacketSize = mqtt.max_packet_size;
    if (mqtt.max_topic_alias > 0) p.topicAliasMaximum = mqtt.max_topic_alias;
    if (mqtt.max_qos < 2) p.maximumQoS = mqtt.max_qos;
    if (!mqtt.retain_available) p.retainAvailable = 0;
    if (!mqtt.wildcard_subscriptions) p.wildcardSubscriptionAvailable = 0;
    if (!mqtt.subscription_identifiers) p.subscriptionIdentifiersAvailable = 0;
    if (!mqtt.shared_subscriptions) p.sharedSubscriptionAvailable = 0;
    this.properties = p;
    const build = (version: ProtocolVersion, sessionPresent: boolean): Buffer =>
      encodePacket({ type: PacketType.CONNACK, sessionPresent, reasonCode: 0, properties: version === 5 ? p : undefined }, version);
    this.built = [build(3, false), build(4, false), build(4, true), build(5, false), build(5, true)];
  }

  /** A successful CONNACK; prebuilt unless this connection needs `extra` 5.0 properties. */
  get(version: ProtocolVersion, sessionPresent: boolean, extra: Properties | undefined): Buffer {
    if (extra !== undefined) {
      return encodePacket({ type: PacketType.CONNACK, sessionPresent, reasonCode: 0, properties: { ...this.properties, ...extra } }, version);
    }
    const i = version === 3 ? 0 : (version === 4 ? 1 : 3) + (sessionPresent ? 1 : 0);
    return this.built[i] as Buffer;
  }
}

const cache = new WeakMap<Config['mqtt'], Connacks>();

/** The CONNACKs of a configuration, built at its first connection. */
export function connacksFor(mqtt: Config['mqtt']): Connacks {
  let c = cache.get(mqtt);
  if (c === undefined) cache.set(mqtt, (c = new Connacks(mqtt)));
  return c;
}
