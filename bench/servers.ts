import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { connectDatabase } from '../src/db/connection.ts';
import { tokenMinter } from '../test/support/baton.ts';

/** A server running as a child process of the benchmark, so it has an event loop of its own. */
export interface ChildServer {
  url: string;
  stop(): Promise<void>;
}

/**
 * A Baton child: its FHIR base URL, and the Authorization header of an internal client holding
 * system/*.* or the scopes asked for (AuditEvent needs scopes naming it: system/AuditEvent.rs).
 */
export interface BatonChild extends ChildServer {
  authorization(scopes?: string[]): Promise<string>;
}

const ROOT = new URL('..', import.meta.url);

/** Node with tsx's loader: TypeScript without a build step, in one process (no tsx wrapper). */
function spawnTypeScript(script: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  child.on('exit', () => process.off('exit', killOnExit));
  return child;
}

/** Ends a child with `signal`, killing it if it has not exited after `graceMs`. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Resolves once a Baton child's /readyz answers 200 (migrations applied, database reachable); kills it after 180 s without. */
export async function waitUntilReady(child: ChildProcess, origin: string): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Baton exited with code ${child.exitCode} before it was ready`);
    const ready = await fetch(`${origin}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) return;
    if (Date.now() > deadline) {
      await stopChild(child, 'SIGKILL');
      throw new Error('Baton was not ready within 180 s');
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * `tsx src/server.ts` on the benchmark database, empty of demo data, logging warnings only;
 * resolves once /readyz answers 200 (migrations applied, database reachable).
 */
export async function startBatonProcess(databaseUrl: string): Promise<BatonChild> {
  const port = await freePort();
  const child = spawnTypeScript('src/server.ts', {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    BATON_SEED: 'none',
    LOG_LEVEL: 'warn',
  });
  child.stdout?.pipe(process.stderr);
  const origin = `http://127.0.0.1:${port}`;
  await waitUntilReady(child, origin);
  return withTokens({ url: `${origin}/fhir`, stop: () => stopChild(child) }, databaseUrl);
}

/** Tokens minted with the key the server keeps in the database, as its token endpoint would issue them; renewed well before they expire. */
export async function withTokens(server: ChildServer, databaseUrl: string): Promise<BatonChild> {
  const db = await connectDatabase({ databaseUrl, dataDir: 'memory://', maxConnections: 1 });
  const mint = tokenMinter(db, server.url);
  const current = new Map<string, { header: string; minted: number }>();
  return {
    url: server.url,
    authorization: async (scopes = ['system/*.*']) => {
      const key = scopes.join(' ');
      let token = current.get(key);
      if (!token || Date.now() - token.minted > 120_000) {
        token = { header: `Bearer ${await mint({ clientId: 'bench', kind: 'internal', scopes })}`, minted: Date.now() };
        current.set(key, token);
      }
      return token.header;
    },
    stop: async () => {
      await server.stop();
      await db.close();
    },
  };
}

/** bench/fixed-response-server.ts serving `body`: the HTTP ceiling. */
export async function startFixedResponseServer(body: string): Promise<ChildServer> {
  return startPortPrintingChild('bench/fixed-response-server.ts', { BENCH_FIXED_BODY: body });
}

/** A bench script that prints {"port": n} once it listens; its URL is the origin. */
export async function startPortPrintingChild(script: string, env: Record<string, string>): Promise<ChildServer> {
  const child = spawnTypeScript(script, env);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [line] = (await Promise.race([once(lines, 'line'), once(child, 'exit').then(() => [undefined])])) as [string | undefined];
  if (line === undefined) throw new Error(`${script} exited before it listened`);
  const { port } = JSON.parse(line) as { port: number };
  return { url: `http://127.0.0.1:${port}`, stop: () => stopChild(child) };
}
