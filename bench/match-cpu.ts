import { readdirSync, readFileSync } from 'node:fs';

/*
 * CPU time of the processes a bench:match phase keeps busy, from /proc (Linux; elsewhere the
 * figures are absent): the Baton child, and the PostgreSQL backends connected to the bench
 * database (the server's shared background processes are not counted). With latency close to
 * concurrency / throughput in a closed loop, CPU per request is what bounds the latency.
 */

const TICKS_PER_SECOND = 100;

function processes(): { pid: number; ppid: number; cpuMs: number; cmdline: string }[] {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) in parentheses: state is field 3.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      found.push({ pid: Number(entry), ppid: Number(fields[1]), cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND, cmdline });
    } catch {
      // The process ended while being read.
    }
  }
  return found;
}

export interface CpuSnapshot {
  baton: number;
  postgres: number;
  bench: number;
}

/** CPU ms so far of Baton (the child of this process running src/server.ts), the database's backends and this process. */
export function cpuSnapshot(database: string): CpuSnapshot | undefined {
  let all;
  try {
    all = processes();
  } catch {
    return undefined;
  }
  const baton = all.filter((p) => p.ppid === process.pid && p.cmdline.includes('src/server.ts'));
  const backends = all.filter((p) => p.cmdline.startsWith('postgres: ') && p.cmdline.includes(` ${database} `));
  const own = process.cpuUsage();
  return {
    baton: baton.reduce((sum, p) => sum + p.cpuMs, 0),
    postgres: backends.reduce((sum, p) => sum + p.cpuMs, 0),
    bench: (own.user + own.system) / 1000,
  };
}

/** CPU ms per request of each process group between two snapshots. */
export function cpuPerRequest(before: CpuSnapshot | undefined, after: CpuSnapshot | undefined, requests: number): Record<string, number> | undefined {
  if (!before || !after) return undefined;
  const per = (key: keyof CpuSnapshot) => Math.round(((after[key] - before[key]) / requests) * 100) / 100;
  return { baton_ms: per('baton'), postgres_backends_ms: per('postgres'), bench_client_ms: per('bench'), total_ms: Math.round((per('baton') + per('postgres') + per('bench')) * 100) / 100 };
}
