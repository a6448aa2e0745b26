import autocannon, { type AutocannonRequest } from 'autocannon';

/** What one load run measured: completed 2xx requests per second and their latency. */
export interface LoadFigures {
  /** 2xx responses (or queries) per second over the run. */
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /** Requests answered with another status, and connection errors/timeouts. */
  failed: number;
  statuses: Record<string, number>;
}

export interface HttpLoad {
  /** Origin of the server, e.g. http://127.0.0.1:8080. */
  url: string;
  connections: number;
  seconds: number;
  /** Builds each request in turn: a different path (and body) every time. */
  next: () => { method?: string; path: string; body?: string; headers?: Record<string, string> };
}

/** Drives a server with autocannon for a fixed time; latencies are autocannon's (1 ms resolution). */
export async function httpLoad(load: HttpLoad): Promise<LoadFigures> {
  const setupRequest = (request: AutocannonRequest): AutocannonRequest => {
    const { method = 'GET', path, body, headers } = load.next();
    return { ...request, method, path, body, headers: { ...request.headers, ...headers } };
  };
  const result = await autocannon({ url: load.url, connections: load.connections, duration: load.seconds, timeout: 30, requests: [{ setupRequest }] });
  const statuses = Object.fromEntries(Object.entries(result.statusCodeStats).map(([status, { count }]) => [status, count]));
  return {
    rps: round(result['2xx'] / result.duration),
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    failed: result.non2xx + result.errors + result.timeouts,
    statuses,
  };
}

/**
 * `concurrency` loops issuing `query` back to back for `seconds`: the same closed-loop load
 * autocannon puts on an HTTP server, applied to the database directly.
 */
export async function queryLoad(query: () => Promise<unknown>, concurrency: number, seconds: number): Promise<LoadFigures> {
  const latencies: number[] = [];
  let failed = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await query();
        latencies.push(performance.now() - t0);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    rps: round(latencies.length / elapsed),
    p50_ms: round(percentile(latencies, 0.5)),
    p99_ms: round(percentile(latencies, 0.99)),
    failed,
    statuses: {},
  };
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

export const round = (n: number, digits = 2): number => Math.round(n * 10 ** digits) / 10 ** digits;

export function pick<T>(values: T[]): T {
  return values[Math.floor(Math.random() * values.length)];
}
