// The management HTTP server of a node: the API's route modules, Basic auth and /metrics on
// management.bind:management.port.
import type { Logger } from 'pino';
import type { LoginThrottle } from '../broker/login-throttle.js';
import type { Metrics } from '../metrics/metrics.js';
import { AdminApi, type Route } from './api.js';
import { brokerRoutes } from './broker-routes.js';
import { clientRoutes } from './client-routes.js';
import { clusterRoutes } from './cluster-routes.js';
import { nodeRoutes } from './node-routes.js';
import { rebalanceRoutes } from './rebalance-routes.js';
import type { AdminContext } from './context.js';
import { listenHttp, type HttpServer } from './http.js';

/** Each family of endpoints is a module. */
const ROUTE_MODULES: ReadonlyArray<(ctx: AdminContext) => Route[]> = [brokerRoutes, clientRoutes, clusterRoutes, rebalanceRoutes, nodeRoutes];

/** Request bodies are small JSON documents (rebalance options). */
const MAX_BODY = 64 * 1024;
/** At most one throttle warning in this long, however many addresses guess. */
const THROTTLE_LOG_INTERVAL_MS = 10_000;

export interface AdminServerOptions {
  readonly bind: string;
  /** 0: any free port (see AdminServer.port). */
  readonly port: number;
  readonly username: string;
  readonly password: string;
  readonly metricsAuth: boolean;
  /** Failed logins per source address (management.max_failed_logins); the metrics read it too. */
  readonly loginThrottle: LoginThrottle;
}

export type AdminServer = HttpServer;

export function startAdminServer(ctx: AdminContext, metrics: Metrics, options: AdminServerOptions, log: Logger): Promise<AdminServer> {
  let lastThrottleLog = 0;
  const api = new AdminApi(
    ROUTE_MODULES.flatMap((routes) => routes(ctx)),
    {
      username: options.username,
      password: options.password,
      metricsAuth: options.metricsAuth,
      loginThrottle: options.loginThrottle,
      metrics: async () => ({ contentType: metrics.contentType, text: await metrics.text() }),
      onThrottled: (address) => {
        const now = Date.now();
        if (now - lastThrottleLog < THROTTLE_LOG_INTERVAL_MS) return;
        lastThrottleLog = now;
        log.warn({ address }, 'failed logins over management.max_failed_logins: this address gets 429 for the rest of the window');
      },
      onError: (err, req) => log.error({ err, method: req.method, path: req.path }, 'management API handler failed'),
    },
  );
  return listenHttp(options.bind, options.port, MAX_BODY, (req) => api.handle(req));
}
