// The client registry alone (pure state, no links): who holds a client id, and how two nodes
// claiming one settle it — the later claim wins, a tie goes to the lower node name, a claim
// that comes during a handover waits for its end.
import t from 'tap';
import { Registry } from '../../src/cluster/registry.js';

t.test('a claim here is announced with an at above every claim known here', async (t) => {
  const r = new Registry('n1');
  t.equal(r.claim('c', 1000), 1000);
  t.equal(r.ownerOf('c'), 'n1');
  t.equal(r.onReg('n2', 'c', 2000, false), true, 'a later peer claim wins');
  // n2's later claim won: the next local claim must beat it even with a clock behind.
  t.equal(r.ownerOf('c'), 'n2');
  t.equal(r.claim('c', 1500), 2001, 'raised above the known claim');
  t.same(r.local(), [['c', 2001]]);
});

t.test('racing claims: the later at wins; a tie goes to the lower node name', async (t) => {
  const r = new Registry('n2');
  r.claim('late', 1000);
  t.equal(r.onReg('n1', 'late', 999, false), false, 'an earlier peer claim loses: ours stays');
  t.equal(r.ownerOf('late'), 'n2');
  t.equal(r.onReg('n3', 'late', 1001, false), true, 'a later peer claim wins: ours yields');
  t.equal(r.ownerOf('late'), 'n3');

  r.claim('tie', 5000);
  t.equal(r.onReg('n3', 'tie', 5000, false), false, 'n2 < n3: ours stays');
  t.equal(r.onReg('n1', 'tie', 5000, false), true, 'n1 < n2: ours yields');
  t.equal(r.ownerOf('tie'), 'n1');
});

t.test('between peers: the later claim is kept; an Unreg only removes the node that holds it', async (t) => {
  const r = new Registry('n1');
  r.onReg('n2', 'c', 100, false);
  r.onReg('n3', 'c', 50, false);
  t.equal(r.ownerOf('c'), 'n2', 'an older claim of another peer does not replace it');
  r.onUnreg('n3', 'c');
  t.equal(r.ownerOf('c'), 'n2');
  r.onUnreg('n2', 'c');
  t.equal(r.ownerOf('c'), undefined);
  t.equal(r.release('c'), false, 'not ours: no Unreg to send');
  r.claim('mine', 1);
  t.equal(r.release('mine'), true);
  t.equal(r.ownerOf('mine'), undefined);
});

t.test('a winning claim during a handover waits for its end', async (t) => {
  const r = new Registry('n1');
  r.claim('c', 1000);
  t.equal(r.onReg('n2', 'c', 2000, true), false, 'not now: the session is being handed over');
  t.equal(r.ownerOf('c'), 'n1');
  t.equal(r.handOverEnded('c', true), true, 'the session stayed here: it yields now');
  t.equal(r.ownerOf('c'), 'n2');

  r.claim('m', 1000);
  r.onReg('n2', 'm', 2000, true);
  t.equal(r.handOverEnded('m', false), false, 'moved: nothing here to end');
  t.equal(r.ownerOf('m'), 'n2', 'the deferred claim is what the registry knows');
  t.equal(r.handOverEnded('m', false), false, 'settled once');

  r.claim('d', 1000);
  r.onReg('n2', 'd', 2000, true);
  t.equal(r.claim('d', 1500), 2001, 'a new local claim beats the deferred one and replaces it');
  t.equal(r.handOverEnded('d', true), false);
  t.equal(r.ownerOf('d'), 'n1');
});

t.test('a RegSync replaces what the peer had and yields where its claims win; forget drops a node', async (t) => {
  const r = new Registry('n1');
  r.onReg('n2', 'gone', 10, false);
  r.claim('won', 100);
  r.claim('lost', 100);
  r.claim('moving', 100);
  const yielded = r.onRegSync('n2', [['won', 50], ['lost', 200], ['moving', 300]], (id) => id === 'moving');
  t.same(yielded, ['lost']);
  t.equal(r.ownerOf('gone'), undefined, 'entries the peer no longer sends are gone');
  t.equal(r.ownerOf('won'), 'n1');
  t.equal(r.ownerOf('moving'), 'n1', 'deferred while handed over');
  r.forget('n2');
  t.equal(r.ownerOf('lost'), undefined);
  t.equal(r.handOverEnded('moving', true), false, 'the forgotten node’s deferred claim went with it');
  t.same(r.local().sort(), [['moving', 100], ['won', 100]]);
});
