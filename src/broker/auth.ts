// Password authentication of CONNECT. Anonymous clients (no user name) are let in iff
// auth.allow_anonymous; without a password file that holds for a CONNECT with a user name too
// (as Mosquitto and EMQX do). With one, a user name needs an entry and a matching password.
// scrypt is deliberately slow, so verified passwords are remembered (bounded LRU), concurrent
// checks of the same credentials share one scrypt run, and the runs are a bounded queue of our
// own (auth.max_pending_checks) feeding a few threads: a check whose connections all closed is
// dropped before it starts, and a flood of wrong passwords gets "Server busy" instead of delaying
// every valid login. Failed logins are throttled per source address (auth.max_failed_logins).
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { ConfigError } from '../config/schema.js';
import type { Config } from '../config/schema.js';
import { LoginThrottle } from './login-throttle.js';
import { parsePasswordFile, SCRYPT_PARAMS, verifyPassword } from './passwords.js';
import type { PasswordHash } from './passwords.js';

/** A password check waiting in the queue or running. */
export interface PendingCheck {
  readonly result: Promise<boolean>;
  /** Its connection closed: a check no other connection waits for is dropped if not started. */
  cancel(): void;
}

/**
 * true/false when decided at once (anonymous, a cached result); 'busy' over
 * auth.max_pending_checks; 'throttled' when the address failed too often; else a PendingCheck
 * (scrypt runs on the threadpool: never scryptSync on the connect path).
 */
export type AuthVerdict = boolean | 'busy' | 'throttled' | PendingCheck;

/** Who is connecting: its address is read only when a password check needs it (a socket's
 *  address costs a getpeername call, which an anonymous CONNECT does not need). */
export interface Peer {
  readonly remoteAddress: string;
}

export interface Authenticator {
  authenticate(clientId: string, username: string | undefined, password: Buffer | undefined, peer: Peer): AuthVerdict;
  /** Checks queued or running (metrics). */
  readonly pendingChecks: number;
  /** CONNECTs refused: over the pending bound (busy), from a throttled address; checks dropped unstarted. */
  readonly refusedBusy: number;
  readonly refusedThrottled: number;
  readonly cancelledChecks: number;
}

/** Verified credentials remembered; each entry is a short string, so this bounds memory to ~1 MB. */
export const AUTH_CACHE_SIZE = 10_000;
/** scrypt runs at once: all but one thread of libuv's pool (UV_THREADPOOL_SIZE, 4 by default), which
 *  file and DNS work share, and no more than the cores. */
const POOL_SIZE = Number(process.env.UV_THREADPOOL_SIZE);
const CONCURRENT_CHECKS = Math.max(1, Math.min((Number.isInteger(POOL_SIZE) && POOL_SIZE > 0 ? POOL_SIZE : 4) - 1, availableParallelism()));
/** At most one warning per kind in this long (no log storm under a flood). */
const LOG_INTERVAL_MS = 10_000;

interface Check {
  readonly key: string;
  readonly hash: PasswordHash;
  /** A copy: the CONNECT's buffer is not kept while the check waits. */
  readonly password: Buffer;
  /** Unknown user: runs against a dummy hash, for the same work, and never succeeds. */
  readonly known: boolean;
  waiters: number;
  started: boolean;
  readonly result: Promise<boolean>;
  settle(ok: boolean): void;
}

function readUsers(file: string): Map<string, PasswordHash> {
  if (file === '') return new Map();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read auth.password_file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parsePasswordFile(text, file);
}

/** Reads auth.password_file once; throws ConfigError naming the file when it is missing or bad. */
export function createAuthenticator(auth: Config['auth'], log: Logger): Authenticator {
  const users = readUsers(auth.password_file);
  // An unknown user costs what a known one does: one scrypt at the file's own cost parameters.
  const first = users.values().next();
  const model = first.done === true ? SCRYPT_PARAMS : first.value;
  const dummy: PasswordHash = { N: model.N, r: model.r, p: model.p, salt: randomBytes(16), hash: randomBytes(32) };
  // Map iteration order is insertion order: re-inserting on a hit makes the first key the LRU one.
  const verified = new Map<string, true>();
  const pending = new Map<string, Check>();
  const queue: Check[] = [];
  let running = 0;
  const throttle = new LoginThrottle(auth.max_failed_logins, auth.failed_login_window * 1000);
  let refusedBusy = 0;
  let cancelledChecks = 0;
  let lastBusyLog = 0;
  let lastThrottleLog = 0;

  const remember = (key: string): void => {
    verified.set(key, true);
    if (verified.size > AUTH_CACHE_SIZE) {
      const oldest = verified.keys().next();
      if (!oldest.done) verified.delete(oldest.value);
    }
  };

  const pump = (): void => {
    while (running < CONCURRENT_CHECKS && queue.length > 0) {
      const check = queue.shift() as Check;
      check.started = true;
      running++;
      verifyPassword(check.hash, check.password)
        .catch(() => false)
        .then((ok) => {
          running--;
          pending.delete(check.key);
          if (ok && check.known) remember(check.key);
          check.settle(ok && check.known);
          pump();
        });
    }
  };

  const failed = (address: string): void => {
    const now = Date.now();
    if (throttle.fail(address, now) && now - lastThrottleLog >= LOG_INTERVAL_MS) {
      lastThrottleLog = now;
      log.warn({ address, limit: auth.max_failed_logins, window_s: auth.failed_login_window }, 'failed logins over auth.max_failed_logins: CONNECTs from this address get Server busy for the rest of the window');
    }
  };

  /**
   * One waiter's view of a shared check: its failure is counted for its own address, also when
   * its connection closed after the check started (closing does not make guessing free).
   */
  const waitFor = (check: Check, address: string): PendingCheck => {
    check.waiters++;
    let cancelled = false;
    return {
      result: check.result.then((ok) => {
        if (!ok && check.started) failed(address);
        return ok;
      }),
      cancel() {
        if (cancelled) return;
        cancelled = true;
        if (--check.waiters > 0 || check.started) return;
        queue.splice(queue.indexOf(check), 1);
        pending.delete(check.key);
        cancelledChecks++;
        check.settle(false);
      },
    };
  };

  return {
    get pendingChecks() {
      return pending.size;
    },
    get refusedBusy() {
      return refusedBusy;
    },
    get refusedThrottled() {
      return throttle.throttled;
    },
    get cancelledChecks() {
      return cancelledChecks;
    },
    authenticate(_clientId, username, password, peer) {
      // Without a password file a user name proves nothing: the CONNECT is anonymous (Mosquitto, EMQX).
      if (username === undefined || auth.password_file === '') return auth.allow_anonymous;
      const address = peer.remoteAddress;
      // Before the cache too: a throttled guesser must not learn that a guess was right.
      if (throttle.blocked(address, Date.now())) return 'throttled';
      if (!password) {
        failed(address);
        return false;
      }
      // The password itself is never kept: the key holds its SHA-256.
      const key = `${username}\0${createHash('sha256').update(password).digest('base64')}`;
      if (verified.delete(key)) {
        verified.set(key, true);
        return true;
      }
      let check = pending.get(key);
      if (check === undefined) {
        if (pending.size >= auth.max_pending_checks) {
          refusedBusy++;
          const now = Date.now();
          if (now - lastBusyLog >= LOG_INTERVAL_MS) {
            lastBusyLog = now;
            log.warn({ limit: auth.max_pending_checks }, 'password checks over auth.max_pending_checks: CONNECTs refused with Server busy');
          }
          return 'busy';
        }
        const h = users.get(username);
        let settle: (ok: boolean) => void = () => undefined;
        const result = new Promise<boolean>((resolve) => (settle = resolve));
        check = { key, hash: h ?? dummy, password: Buffer.from(password), known: h !== undefined, waiters: 0, started: false, result, settle };
        pending.set(key, check);
        queue.push(check);
        pump();
      }
      return waitFor(check, address);
    },
  };
}
