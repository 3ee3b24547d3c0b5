// Decoded MQTT packet shapes shared by the codec and the broker. One shape per packet type covers
// 3.1 (protocol level 3), 3.1.1 (4) and 5.0 (5); fields that only 5.0 carries are optional.

export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/** Protocol level byte of CONNECT: 3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0. */
export type ProtocolVersion = 3 | 4 | 5;
export type QoS = 0 | 1 | 2;

export type UserProperties = Array<[string, string]>;

/** Every MQTT 5.0 property (spec 2.2.2.2), by name. Which ones a packet may carry is enforced by the decoder. */
export interface Properties {
  payloadFormatIndicator?: number;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  subscriptionIdentifiers?: number[];
  sessionExpiryInterval?: number;
  assignedClientIdentifier?: string;
  serverKeepAlive?: number;
  authenticationMethod?: string;
  authenticationData?: Buffer;
  requestProblemInformation?: number;
  willDelayInterval?: number;
  requestResponseInformation?: number;
  responseInformation?: string;
  serverReference?: string;
  reasonString?: string;
  receiveMaximum?: number;
  topicAliasMaximum?: number;
  topicAlias?: number;
  maximumQoS?: number;
  retainAvailable?: number;
  userProperties?: UserProperties;
  maximumPacketSize?: number;
  wildcardSubscriptionAvailable?: number;
  subscriptionIdentifiersAvailable?: number;
  sharedSubscriptionAvailable?: number;
}

export interface Will {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  properties?: Properties;
}

export interface ConnectPacket {
  type: 1;
  protocolName: string;
  protocolVersion: ProtocolVersion;
  cleanStart: boolean;
  keepalive: number;
  clientId: string;
  properties?: Properties;
  will?: Will;
  username?: string;
  password?: Buffer;
}

export interface ConnackPacket {
  type: 2;
  sessionPresent: boolean;
  /** 5.0 reason code, or the 3.x return code (0-5). */
  reasonCode: number;
  properties?: Properties;
}

export interface PublishPacket {
  type: 3;
  dup: boolean;
  qos: QoS;
  retain: boolean;
  /** Empty when a 5.0 sender uses a topic alias alone; the broker resolves it. */
  topic: string;
  /** 0 for QoS 0. */
  packetId: number;
  properties?: Properties;
  /** A view of the received bytes, never a copy. */
  payload: Buffer;
}

/** PUBACK, PUBREC, PUBREL and PUBCOMP share one shape. */
export interface AckPacket {
  type: 4 | 5 | 6 | 7;
  packetId: number;
  /** 0 (Success) when absent on the wire. */
  reasonCode: number;
  properties?: Properties;
}

export interface SubscriptionRequest {
  filter: string;
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  /** 0 send retained on subscribe, 1 only if the subscription is new, 2 never. */
  retainHandling: 0 | 1 | 2;
}

export interface SubscribePacket {
  type: 8;
  packetId: number;
  subscriptions: SubscriptionRequest[];
  properties?: Properties;
}

export interface SubackPacket {
  type: 9;
  packetId: number;
  reasonCodes: number[];
  properties?: Properties;
}

export interface UnsubscribePacket {
  type: 10;
  packetId: number;
  filters: string[];
  properties?: Properties;
}

export interface UnsubackPacket {
  type: 11;
  packetId: number;
  /** 5.0 only; empty for 3.x. */
  reasonCodes: number[];
  properties?: Properties;
}

export interface PingreqPacket {
  type: 12;
}

export interface PingrespPacket {
  type: 13;
}

export interface DisconnectPacket {
  type: 14;
  reasonCode: number;
  properties?: Properties;
}

export interface AuthPacket {
  type: 15;
  reasonCode: number;
  properties?: Properties;
}

export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | AckPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket
  | AuthPacket;
