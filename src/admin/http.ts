// The management HTTP server's transport: node:http, so every client that operators point at
// it is answered, including HAProxy's default `option httpchk` probe (HTTP/1.0, no Host header),
// which uWebSockets.js leaves unanswered. Requests become plain data before the handler runs.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HttpRequestData {
  /** Upper case, e.g. GET. */
  readonly method: string;
  /** The path, percent-encoded as received, without the query string. */
  readonly path: string;
  /** The raw query string, without '?'. */
  readonly query: string;
  /** The Authorization header, '' when absent. */
  readonly authorization: string;
  /** Where a browser says the request comes from: the Origin, Sec-Fetch-Site and Host headers, '' when absent. */
  readonly origin: string;
  readonly fetchSite: string;
  readonly host: string;
  /** The peer's address, for the failed-login throttle. */
  readonly remoteAddress: string;
  /** null: the body was over the size limit (and was not read further). */
  readonly body: Buffer | null;
}

export interface HttpReply {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body: string;
}

export type HttpHandler = (req: HttpRequestData) => Promise<HttpReply>;

export interface HttpServer {
  readonly port: number;
  /** Stops accepting connections. */
  close(): void;
}

/**
 * Reads a request body of at most maxBody bytes; over it, done(null) once and the rest is
 * discarded.
 */
function readBody(req: IncomingMessage, maxBody: number, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', (chunk: Buffer) => {
    if (over) return;
    size += chunk.length;
    if (size > maxBody) {
      over = true;
      done(null);
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (!over) done(Buffer.concat(chunks, size));
  });
}

function send(res: ServerResponse, reply: HttpReply): void {
  if (res.destroyed) return; // the client went away while the handler ran
  res.writeHead(reply.status, { 'content-length': Buffer.byteLength(reply.body), ...reply.headers });
  res.end(reply.body);
}

/**
 * Listens on host:port (0: a free port) and answers every request with `handler`, which is
 * expected to turn its own errors into replies: a rejection is answered with a bare 500.
 */
export async function listenHttp(host: string, port: number, maxBody: number, handler: HttpHandler): Promise<HttpServer> {
  // Lenient on Host: health checks are often written without one, even over HTTP/1.1.
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    const method = (req.method ?? 'GET').toUpperCase();
    const h = req.headers;
    const authorization = h.authorization ?? '';
    const origin = h.origin ?? '';
    const fetchSite = typeof h['sec-fetch-site'] === 'string' ? h['sec-fetch-site'] : '';
    const host = h.host ?? '';
    const remoteAddress = req.socket.remoteAddress ?? '';
    const dispatch = (body: Buffer | null): void => {
      handler({ method, path, query, authorization, origin, fetchSite, host, remoteAddress, body }).then(
        (reply) => send(res, reply),
        () => send(res, { status: 500, body: '' }),
      );
    };
    if (Number(req.headers['content-length'] ?? '0') > maxBody) {
      dispatch(null);
      req.resume();
    } else readBody(req, maxBody, dispatch);
  });
  // Health checkers and scrapers poll every second or so: keep their connections cheap to hold.
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 10000;
  server.requestTimeout = 30000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen for the management API on ${host}:${port}: ${err.message}`)));
    server.listen({ host, port }, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}
