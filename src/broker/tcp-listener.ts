import net from 'node:net';
import type { Broker } from './broker.js';
import { TcpConnection } from './tcp-connection.js';
import { TokenBucket } from './token-bucket.js';

/**
 * The MQTT/TCP listener. Over max_connections or over the connection rate a socket is accepted
 * and closed at once (counted): the cheapest refusal, and it keeps the accept queue moving.
 */
export async function listenTcp(broker: Broker, host: string, port: number): Promise<net.Server> {
  const mqtt = broker.config.mqtt;
  const bucket = mqtt.max_conn_rate > 0 ? new TokenBucket(mqtt.max_conn_rate, Math.max(1, mqtt.max_conn_burst)) : null;
  const server = net.createServer({ noDelay: true }, (socket) => {
    if (broker.stats.connectionsLive >= mqtt.max_connections) {
      broker.stats.acceptMaxConnections++;
      socket.destroy();
      return;
    }
    if (bucket !== null && !bucket.tryTake()) {
      broker.stats.acceptRateLimited++;
      socket.destroy();
      return;
    }
    new TcpConnection(socket, broker);
  });
  server.on('error', (err) => broker.log.error({ err }, 'MQTT/TCP listener error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
