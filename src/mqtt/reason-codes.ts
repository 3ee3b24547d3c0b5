// MQTT 5.0 reason codes (spec 2.4) and the 3.x CONNACK return codes they map to.

export const ReasonCode = {
  Success: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWill: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  ContinueAuthentication: 0x18,
  ReAuthenticate: 0x19,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  MessageRateTooHigh: 0x96,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  UseAnotherServer: 0x9c,
  ServerMoved: 0x9d,
  SharedSubscriptionsNotSupported: 0x9e,
  ConnectionRateExceeded: 0x9f,
  MaximumConnectTime: 0xa0,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
} as const;
export type ReasonCode = (typeof ReasonCode)[keyof typeof ReasonCode];

/** MQTT 3.1/3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3). */
export const ReturnCodeV3 = {
  Accepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUserNameOrPassword: 4,
  NotAuthorized: 5,
} as const;

/** The 3.x CONNACK return code for a 5.0 CONNACK reason code. */
export function connackReturnCodeV3(reason: number): number {
  switch (reason) {
    case ReasonCode.Success:
      return ReturnCodeV3.Accepted;
    case ReasonCode.UnsupportedProtocolVersion:
      return ReturnCodeV3.UnacceptableProtocolVersion;
    case ReasonCode.ClientIdentifierNotValid:
      return ReturnCodeV3.IdentifierRejected;
    case ReasonCode.BadUserNameOrPassword:
      return ReturnCodeV3.BadUserNameOrPassword;
    case ReasonCode.NotAuthorized:
    case ReasonCode.Banned:
      return ReturnCodeV3.NotAuthorized;
    default:
      return ReturnCodeV3.ServerUnavailable;
  }
}

const names = new Map<number, string>(Object.entries(ReasonCode).map(([k, v]) => [v, k]));

/** A stable snake_case label for logs and metric labels, e.g. 0x81 -> "malformed_packet". */
export function reasonName(code: number): string {
  const name = names.get(code);
  if (name === undefined) return `reason_0x${code.toString(16)}`;
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}
