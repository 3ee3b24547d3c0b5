// The property table: every property in every context, and the value rules.
import t from 'tap';
import { Reader } from '../../src/mqtt/bytes.js';
import type { Properties } from '../../src/mqtt/packets.js';
import { decodeProperties, PROPERTY_TABLE, propertiesSize, WILL_PROPERTIES, writeProperties } from '../../src/mqtt/properties.js';
import { ReasonCode } from '../../src/mqtt/reason-codes.js';
import { varintSize, writeVarint } from '../../src/mqtt/strings.js';
import { reasonOf } from './support.js';

/** A property block (length prefix included) holding `props`. */
function block(props: Properties): Buffer {
  const size = propertiesSize(props);
  const buf = Buffer.alloc(varintSize(size) + size);
  const end = writeProperties(buf, writeVarint(buf, 0, size), props);
  if (end !== buf.length) throw new Error(`propertiesSize ${size} disagrees with writeProperties`);
  return buf;
}

function decode(buf: Buffer, context: number): Properties | undefined {
  const r = new Reader().reset(buf);
  const props = decodeProperties(r, context);
  r.done('property block');
  return props;
}

const sample: Required<Properties> = {
  payloadFormatIndicator: 1,
  messageExpiryInterval: 0xfffffffe,
  contentType: 'text/plain; charset=ütf-8',
  responseTopic: 'reply/to',
  correlationData: Buffer.from([0, 1, 2, 255]),
  subscriptionIdentifiers: [268_435_455],
  sessionExpiryInterval: 0xffffffff,
  assignedClientIdentifier: 'auto-1',
  serverKeepAlive: 30,
  authenticationMethod: 'SCRAM-SHA-1',
  authenticationData: Buffer.from('data'),
  requestProblemInformation: 0,
  willDelayInterval: 10,
  requestResponseInformation: 1,
  responseInformation: 'resp',
  serverReference: 'other:1883',
  reasonString: 'because',
  receiveMaximum: 65535,
  topicAliasMaximum: 10,
  topicAlias: 7,
  maximumQoS: 1,
  retainAvailable: 0,
  userProperties: [
    ['k', 'v'],
    ['k', 'v2'],
  ],
  maximumPacketSize: 1_048_576,
  wildcardSubscriptionAvailable: 1,
  subscriptionIdentifiersAvailable: 0,
  sharedSubscriptionAvailable: 1,
};

t.test('the table covers every field of Properties exactly once', async (t) => {
  t.strictSame(PROPERTY_TABLE.map((d) => d.name).sort(), Object.keys(sample).sort());
  t.equal(new Set(PROPERTY_TABLE.map((d) => d.id)).size, PROPERTY_TABLE.length, 'identifiers are unique');
});

t.test('every property in every context: decoded where allowed, 0x81 elsewhere', async (t) => {
  for (const def of PROPERTY_TABLE) {
    const props: Properties = { [def.name]: sample[def.name] };
    const bytes = block(props);
    t.equal(bytes[varintSize(bytes.length - 1)], def.id, `${def.name} is written with id 0x${def.id.toString(16)}`);
    for (let context = 0; context <= 15; context++) {
      if (def.packets & (1 << context)) {
        t.strictSame(decode(bytes, context), props, `${def.name} in context ${context}`);
      } else {
        t.equal(reasonOf(() => decode(bytes, context)), ReasonCode.MalformedPacket, `${def.name} refused in context ${context}`);
      }
    }
  }
});

t.test('spec table spot checks', async (t) => {
  const allowed = (name: keyof Properties, context: number): boolean =>
    (PROPERTY_TABLE.find((d) => d.name === name)!.packets & (1 << context)) !== 0;
  t.ok(allowed('willDelayInterval', WILL_PROPERTIES));
  t.notOk(allowed('willDelayInterval', 1));
  t.ok(allowed('subscriptionIdentifiers', 3));
  t.ok(allowed('subscriptionIdentifiers', 8));
  t.notOk(allowed('subscriptionIdentifiers', 9));
  t.ok(allowed('userProperties', 15));
  t.notOk(allowed('userProperties', 12), 'PINGREQ has no properties');
  t.ok(allowed('reasonString', 14));
  t.notOk(allowed('reasonString', 3));
  t.ok(allowed('serverReference', 14));
});

t.test('all publish/will properties together round-trip', async (t) => {
  const props: Properties = {
    payloadFormatIndicator: 0,
    messageExpiryInterval: 60,
    contentType: 'c',
    responseTopic: 'r',
    correlationData: Buffer.from('x'),
    userProperties: [['a', '']],
  };
  t.strictSame(decode(block(props), WILL_PROPERTIES), props);
  t.strictSame(decode(block({ ...props, topicAlias: 1, subscriptionIdentifiers: [1, 2, 16384] }), 3), {
    ...props,
    topicAlias: 1,
    subscriptionIdentifiers: [1, 2, 16384],
  });
});

t.test('an empty block is undefined; an empty properties object encodes as an empty block', async (t) => {
  t.equal(decode(Buffer.from([0]), 3), undefined);
  t.strictSame(block({}), Buffer.from([0]));
});

t.test('user properties keep order and duplicates', async (t) => {
  const props: Properties = {
    userProperties: [
      ['a', '1'],
      ['b', '2'],
      ['a', '3'],
    ],
  };
  t.strictSame(decode(block(props), 1), props);
});

t.test('every byte property is a 0/1 flag: 2 is a Protocol Error', async (t) => {
  for (const def of PROPERTY_TABLE.filter((d) => d.type === 'byte')) {
    const context = Math.log2(def.packets & -def.packets); // lowest allowed context
    const bytes = Buffer.from([2, def.id, 2]);
    t.equal(reasonOf(() => decode(bytes, context)), ReasonCode.ProtocolError, def.name);
  }
});

t.test('zero values that are Protocol Errors, and zero values that are fine', async (t) => {
  t.equal(reasonOf(() => decode(Buffer.from([3, 0x21, 0, 0]), 1)), ReasonCode.ProtocolError, 'receiveMaximum 0');
  t.equal(reasonOf(() => decode(Buffer.from([5, 0x27, 0, 0, 0, 0]), 1)), ReasonCode.ProtocolError, 'maximumPacketSize 0');
  t.equal(reasonOf(() => decode(Buffer.from([3, 0x23, 0, 0]), 3)), ReasonCode.TopicAliasInvalid, 'topicAlias 0');
  t.equal(reasonOf(() => decode(Buffer.from([2, 0x0b, 0]), 8)), ReasonCode.ProtocolError, 'subscriptionIdentifier 0');
  t.strictSame(decode(Buffer.from([3, 0x22, 0, 0]), 1), { topicAliasMaximum: 0 }, 'topicAliasMaximum 0 is allowed');
  t.strictSame(decode(Buffer.from([5, 0x11, 0, 0, 0, 0]), 14), { sessionExpiryInterval: 0 }, 'sessionExpiryInterval 0');
});

t.test('duplicates: Protocol Error except user property and (in PUBLISH) subscription identifier', async (t) => {
  for (const def of PROPERTY_TABLE.filter((d) => d.type !== 'pair' && d.type !== 'varint')) {
    const one = block({ [def.name]: sample[def.name] });
    const body = one.subarray(varintSize(one.length - 1));
    const twice = Buffer.concat([Buffer.from([body.length * 2]), body, body]);
    const context = Math.log2(def.packets & -def.packets);
    t.equal(reasonOf(() => decode(twice, context)), ReasonCode.ProtocolError, `${def.name} twice`);
  }
  t.strictSame(decode(Buffer.from([4, 0x0b, 1, 0x0b, 2]), 3), { subscriptionIdentifiers: [1, 2] }, 'PUBLISH: several');
  t.equal(reasonOf(() => decode(Buffer.from([4, 0x0b, 1, 0x0b, 2]), 8)), ReasonCode.ProtocolError, 'SUBSCRIBE: once');
});

t.test('a property identifier must be a minimal varint', async (t) => {
  // 0x81 0x00 would be a non-minimal 1: malformed, not "property 1".
  t.equal(reasonOf(() => decode(Buffer.from([3, 0x81, 0x00, 1]), 3)), ReasonCode.MalformedPacket);
});

t.test('wrong length for the data type is malformed', async (t) => {
  t.equal(reasonOf(() => decode(Buffer.from([3, 0x02, 0, 0]), 3)), ReasonCode.MalformedPacket, 'u32 cut short by the block');
  t.equal(reasonOf(() => decode(Buffer.from([2, 0x23, 0]), 3)), ReasonCode.MalformedPacket, 'u16 cut short by the packet');
  t.equal(reasonOf(() => decode(Buffer.from([4, 0x09, 0, 5, 1]), 3)), ReasonCode.MalformedPacket, 'binary longer than the block');
});
