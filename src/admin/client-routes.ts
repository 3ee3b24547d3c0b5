// GET /clients (paged), GET /clients/:clientid, DELETE /clients/:clientid (kick), with EMQX's
// field names. A client is a session: connected ones carry their connection's details.
import { Protocol } from '../broker/protocol.js';
import type { Session } from '../broker/session.js';
import { DROP_REASONS } from '../broker/stats.js';
import { done, ok, page, type ApiRequest, type ApiVersion, type Route } from './api.js';
import type { AdminContext } from './context.js';
import { ApiError } from './errors.js';

const pad = (n: number): string => String(n).padStart(2, '0');

/** v4: EMQX 4.4's local `YYYY-MM-DD HH:MM:SS`; v5: RFC 3339. */
function formatTime(ms: number, version: ApiVersion): string {
  const d = new Date(ms);
  if (version === 'v5') return d.toISOString();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function clientRecord(ctx: AdminContext, session: Session, version: ApiVersion): Record<string, unknown> {
  const conn = session.owner instanceof Protocol ? session.owner : null;
  const record: Record<string, unknown> = {
    node: ctx.nodeName,
    clientid: session.clientId,
    username: conn?.username ?? null,
    ip_address: conn?.remoteAddress ?? null,
    port: conn?.remotePort ?? null,
    proto_name: conn === null ? null : conn.protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
    proto_ver: conn?.protocolVersion ?? null,
    keepalive: conn?.keepalive ?? 0,
    clean_start: conn?.cleanStart ?? false,
    expiry_interval: session.expiryInterval,
    connected: conn !== null,
    created_at: formatTime(session.createdAt, version),
    subscriptions_cnt: session.subscriptions.size,
    [version === 'v4' ? 'inflight' : 'inflight_cnt']: session.inflight.size,
    mqueue_len: session.queuedCount,
    max_mqueue: ctx.broker.config.mqtt.max_queued,
    mqueue_bytes: session.queuedBytes,
    // What was not delivered to this client: queue overflow (EMQX's mqueue_dropped), then by reason.
    mqueue_dropped: dropsOf(session, 0),
    'send_msg.dropped': DROP_REASONS.reduce((sum, _r, i) => sum + dropsOf(session, i), 0),
  };
  DROP_REASONS.forEach((reason, i) => (record[`send_msg.dropped.${reason}`] = dropsOf(session, i)));
  if (conn !== null) record.connected_at = formatTime(conn.connectedAt, version);
  else if (session.disconnectedAt !== 0) record.disconnected_at = formatTime(session.disconnectedAt, version);
  return record;
}

function dropsOf(session: Session, reason: number): number {
  return session.drops === null ? 0 : (session.drops[reason] as number);
}

function lookup(ctx: AdminContext, req: ApiRequest): Session | undefined {
  return ctx.broker.sessions.get(req.params.clientid as string);
}

export function clientRoutes(ctx: AdminContext): Route[] {
  const notFound = (): ApiError => new ApiError('client_not_found', 'Client ID not found');
  return [
    {
      method: 'GET',
      path: '/clients',
      handler: (req) =>
        page(req, ctx.broker.sessions.size, (skip, limit) => {
          const out: Record<string, unknown>[] = [];
          let i = 0;
          for (const session of ctx.broker.sessions.values()) {
            if (i++ < skip) continue;
            out.push(clientRecord(ctx, session, req.version));
            if (out.length === limit) break;
          }
          return out;
        }),
    },
    {
      method: 'GET',
      path: '/clients/:clientid',
      handler: (req) => {
        const session = lookup(ctx, req);
        // EMQX 4.4 answers a lookup with a list, empty when the client is unknown.
        if (req.version === 'v4') return ok(session === undefined ? [] : [clientRecord(ctx, session, 'v4')]);
        if (session === undefined) throw notFound();
        return ok(clientRecord(ctx, session, 'v5'));
      },
    },
    {
      method: 'DELETE',
      path: '/clients/:clientid',
      handler: async (req) => {
        const clientId = req.params.clientid as string;
        // Wherever in the cluster the session is, the same answer: kicked (connected) or discarded
        // with its pending will (disconnected), as EMQX 4.4 does.
        if (ctx.broker.sessions.kick(clientId)) return done();
        let kicked: boolean;
        try {
          kicked = ctx.cluster !== undefined && (await ctx.cluster.kickRemote(clientId));
        } catch (err) {
          throw new ApiError('unavailable', `kick ${clientId}: ${(err as Error).message}`);
        }
        if (!kicked) throw notFound();
        return done();
      },
    },
  ];
}
