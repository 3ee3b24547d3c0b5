// Aedes as a broker under test: a minimal MQTT server over node:net (in-memory persistence).
// Run: node native-bench/build/aedes-server.js <port>
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { Aedes } from 'aedes';

export interface AedesServer {
  port: number;
  close(): Promise<void>;
}

export async function startAedes(port: number): Promise<AedesServer> {
  const broker = await Aedes.createBroker();
  // Nagle off, as every broker here is run: otherwise small QoS 0 deliveries wait for delayed ACKs
  const server = net.createServer({ noDelay: true }, broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1', backlog: 4096 }, resolve);
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        broker.close(() => server.close(() => resolve()));
      }),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const srv = await startAedes(Number(process.argv[2] ?? 1883));
  console.log(`LISTENING port=${srv.port}`);
  process.once('SIGTERM', () => process.exit(0));
}
