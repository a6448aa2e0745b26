import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { stopChild, waitUntilReady } from './servers.ts';

/**
 * Baton processes for bench:export: an API process and export worker processes on one
 * database, each its own `node dist/server.js` (the build, as production runs it: tsx holds
 * ~75 MB more; its pid is the server's own, and its memory can be read from /proc), sharing one
 * public base URL, so the worker plans what the API serves. A worker can be killed with
 * SIGKILL, as a crash would end it.
 */
export interface BatonProcess {
  pid: number;
  origin: string;
  /** Resident set now and its peak over the process's life, in MB (/proc/<pid>/status). */
  memory(): { rssMb: number; hwmMb: number } | undefined;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

const ROOT = new URL('..', import.meta.url);

function memoryOf(pid: number): { rssMb: number; hwmMb: number } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: Math.round(kb('VmRSS') / 1024), hwmMb: Math.round(kb('VmHWM') / 1024) };
}

/** Compiles src/ into dist/ (npm run build), so the processes run the code of this checkout. */
export function buildBaton(): void {
  const built = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (built.status !== 0) throw new Error(`npm run build failed (exit ${built.status})`);
}

/** Starts `dist/server.js` with `env` on `port` (node given `nodeArgs`, such as --cpu-prof); resolves once /readyz answers 200. */
export async function startBaton(databaseUrl: string, port: number, env: Record<string, string>, nodeArgs: string[] = []): Promise<BatonProcess> {
  const child = spawn(process.execPath, [...nodeArgs, 'dist/server.js'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: databaseUrl, BATON_SEED: 'none', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  child.on('exit', () => process.off('exit', killOnExit));
  const origin = `http://127.0.0.1:${port}`;
  await waitUntilReady(child, origin);
  const pid = child.pid as number;
  return {
    pid,
    origin,
    memory: () => memoryOf(pid),
    kill: () => stopChild(child, 'SIGKILL', 15_000),
    stop: () => stopChild(child, 'SIGTERM', 15_000),
  };
}

/** Samples the resident set of processes every intervalMs; peak() is the highest seen per process since start. */
export function rssSampler(processes: Record<string, BatonProcess>, intervalMs = 100): { peak(): Record<string, number>; stop(): void } {
  const peaks: Record<string, number> = {};
  const sample = () => {
    for (const [name, p] of Object.entries(processes)) {
      const m = p.memory();
      if (m) peaks[name] = Math.max(peaks[name] ?? 0, m.rssMb);
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    peak: () => {
      sample();
      return { ...peaks };
    },
    stop: () => clearInterval(timer),
  };
}
