// The one cluster-wire codec of a Message: every field survives encode -> link frame (msgpack) ->
// decode, in each carrier's position (forward, retain, handover buffer), and absent optional
// fields come back absent rather than as null or 0.
import t, { type Test } from 'tap';
import { Message } from '../../src/broker/message.js';
import { encodeFrame, FrameDecoder, type LinkMessage } from '../../src/cluster/link.js';
import { decodeMessage, encodeMessage } from '../../src/cluster/message-wire.js';
import { Msg } from '../../src/cluster/messages.js';

/** Through a real link frame, as a peer reads it. */
function overTheWire(m: LinkMessage): LinkMessage {
  const frame = encodeFrame([m]);
  const decoder = new FrameDecoder();
  decoder.push(frame);
  const messages = decoder.next();
  if (messages === undefined || messages.length !== 1) throw new Error('no frame decoded');
  return messages[0] as LinkMessage;
}

const full = new Message(
  'a/b/c',
  Buffer.from([0, 1, 2, 0xff]),
  2,
  true,
  {
    payloadFormatIndicator: 1,
    contentType: 'application/json',
    responseTopic: 'reply/here',
    correlationData: Buffer.from('corr'),
    userProperties: [
      ['k', 'v'],
      ['k', 'v2'],
    ],
  },
  1_900_000_000_123,
  'publisher-1',
  true,
  'node1@127.0.0.1',
  42,
);

function sameMessage(t: Test, got: Message, want: Message): void {
  t.equal(got.topic, want.topic, 'topic');
  t.same([...got.payload], [...want.payload], 'payload bytes');
  t.equal(got.qos, want.qos, 'qos');
  t.equal(got.retain, want.retain, 'retain');
  t.same(got.properties, want.properties, 'properties');
  t.equal(got.expiresAt, want.expiresAt, 'expiresAt');
  t.equal(got.from, want.from, 'from');
  t.equal(got.origin, want.origin, 'origin');
  t.equal(got.originSeq, want.originSeq, 'originSeq');
  t.equal(got.owned, false, 'a decoded payload is a view of the frame, not owned');
}

t.test('every field round-trips in each carrier position', async (t) => {
  const forward = overTheWire(encodeMessage(full, [Msg.Forward, ['g1', 'g2']]));
  t.equal(forward[0], Msg.Forward);
  t.same(forward[1], ['g1', 'g2'], 'the carrier keeps its own fields in front');
  sameMessage(t, decodeMessage(forward, 2), full);

  const retain = overTheWire(encodeMessage(full, [Msg.Retain]));
  sameMessage(t, decodeMessage(retain, 1), full);

  const sync = overTheWire([Msg.RetainSync, [encodeMessage(full, [])]]);
  sameMessage(t, decodeMessage((sync[1] as LinkMessage[])[0] as LinkMessage, 0), full);

  const buffered = overTheWire(encodeMessage(full, [1, false, [7, 9]]));
  t.same(buffered.slice(0, 3), [1, false, [7, 9]], 'delivery fields in front');
  sameMessage(t, decodeMessage(buffered, 3), full);
});

t.test('absent optional fields come back absent', async (t) => {
  const bare = new Message('t', Buffer.alloc(0), 0, false, undefined, 0, 'c', false);
  const got = decodeMessage(overTheWire(encodeMessage(bare, [Msg.Retain])), 1);
  sameMessage(t, got, bare);
  t.equal(got.properties, undefined);
  t.equal(got.origin, undefined);
  t.equal(got.originSeq, undefined);
  t.equal(got.payload.length, 0, 'an empty payload (a retained clear) stays empty');
});
