// An in-process Broker with the embedded defaults, for tests that drive it without a node process.
import { pino, type Logger } from 'pino';
import { loadAcl } from '../../src/broker/acl.js';
import { createAuthenticator } from '../../src/broker/auth.js';
import { Broker } from '../../src/broker/broker.js';
import { TimerWheel } from '../../src/broker/timer-wheel.js';
import { defaultConfig, type Config } from '../../src/config/schema.js';
import type { SessionStore } from '../../src/store/store.js';

/** `wheel`: one on a test's clock (TimerWheel's injectable now), advanced by the test. */
export function testBroker(opts: { config?: Config; log?: Logger; store?: SessionStore | null; wheel?: TimerWheel } = {}): Broker {
  const config = opts.config ?? defaultConfig();
  const log = opts.log ?? pino({ level: 'silent' });
  return new Broker(config, opts.wheel ?? new TimerWheel(250), createAuthenticator(config.auth, log), loadAcl(config.auth), log, opts.store ?? null);
}
