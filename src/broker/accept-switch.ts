// Pausing a listener's accepts while its node is evacuated or rebalanced
// (listeners.stop_accepting_on_evacuation). On a port shared by several nodes (`tidemq start
// --nodes N`) the kernel then hands new connections to the siblings that still accept, so a client
// lands on a serving node at its first try instead of being refused at CONNECT and retrying.
import type { Server } from 'node:net';
import type { ListenerGate } from './tcp-listener.js';

export interface AcceptSwitch {
  readonly gate: ListenerGate;
  /** Stops accepting; open connections stay. */
  pause(): void;
  /** Accepts again on the same address and port. */
  resume(): Promise<void>;
}

/**
 * A node:net listener (TCP, TLS). In a cluster worker its handle is the primary's shared socket:
 * closing it closes only this worker's copy, and what waits in the accept queue goes to siblings.
 */
export function serverSwitch(gate: ListenerGate, server: Server, host: string, port: number, backlog: number): AcceptSwitch {
  return {
    gate,
    pause() {
      if (!server.listening) return;
      // Not waiting for 'close': that comes only once every open connection has ended.
      server.close();
    },
    resume() {
      if (server.listening) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port, backlog }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
  };
}
