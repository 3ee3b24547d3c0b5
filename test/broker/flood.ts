// The memory-bound tests' side of the floods in native-bench/lib/floods.ts (shared with the
// benchmark's memory section): sockets closed on teardown, RSS in kB, the long-variant switch.

import type { Socket } from 'node:net';
import type { Test } from 'tap';
import * as floods from '../../native-bench/lib/floods.js';
import type { RawClient } from '../helpers/clients.js';
import { connectBytes, readPacket } from './support.js';

export { partialConnect, type FloodResult, type SeqSubscriber } from '../../native-bench/lib/floods.js';

/**
 * What a node may grow by beside the bounded data under a flood: V8's young generation (up to
 * 3 x 16 MiB semi-spaces) and old-space slack between collections, malloc arenas, LMDB's dirty
 * pages, socket buffers. Measured at 5-46 MB on a loaded 2-core machine; the unbounded cases of
 * the issue grew by 0.6-3.2 GB.
 */
export const RUNTIME_SLACK_KB = 64 * 1024;

/** Whether the long variants run (TIDEMQ_LONG_TESTS=1): floods of 15 s instead of a few. */
export const LONG = process.env.TIDEMQ_LONG_TESTS === '1';

const closeOnTeardown =
  (t: Test) =>
  (socket: Socket): void => {
    t.teardown(() => {
      socket.destroy();
    });
  };

export function flood(t: Test, opts: floods.FloodOptions): Promise<floods.FloodResult> {
  return floods.flood(closeOnTeardown(t), opts);
}

export function seqSubscriber(t: Test, port: number, clientId: string, filter: string, clean: boolean): Promise<floods.SeqSubscriber> {
  return floods.seqSubscriber(closeOnTeardown(t), port, clientId, filter, clean);
}

/** The node's RSS sampled until stop() or the test's end; growth in kB. */
export function sampleRss(t: Test, pid: number): { readonly maxGrowth: number; stop(): void } {
  const s = floods.sampleRss(pid);
  t.teardown(() => s.stop());
  return {
    get maxGrowth() {
      return Math.round(s.maxGrowth / 1024);
    },
    stop: () => s.stop(),
  };
}

/** ms from CONNECT to CONNACK for a fresh client; throws when none comes. */
export async function connackMs(raw: RawClient, clientId: string): Promise<number> {
  const start = Date.now();
  raw.send(connectBytes(clientId, 4));
  const p = await readPacket(raw, 4, 10_000);
  if (p?.cmd !== 'connack' || p.returnCode !== 0) throw new Error(`expected CONNACK 0, got ${JSON.stringify(p)}`);
  return Date.now() - start;
}
