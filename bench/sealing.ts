import type postgres from 'postgres';
import { round } from './load.ts';

/*
 * The audit sealer's backlog, for benchmarks that charge sealing to the runs that caused it
 * (bench:audit, bench:rest): they wait for it to be sealed between measurements.
 */

/**
 * Events after the chain head: what the sealer has still to seal. Read through the (txid, seq)
 * index, so polling it costs nothing at any trail size.
 */
export async function pendingEvents(sql: postgres.Sql): Promise<number> {
  const [head] = await sql<{ txid: string; seq: string }[]>`SELECT event_txid::text AS txid, event_seq::text AS seq FROM audit_chain ORDER BY position DESC LIMIT 1`;
  const [{ pending }] = head
    ? await sql<{ pending: number }[]>`SELECT count(*)::float8 AS pending FROM audit_events WHERE (txid, seq) > (${head.txid}::xid8, ${head.seq}::bigint)`
    : await sql<{ pending: number }[]>`SELECT count(*)::float8 AS pending FROM audit_events`;
  return pending;
}

/**
 * Waits until the sealer has sealed every pending event; how long that took, and what it started
 * from. Gives up when nothing was sealed for 30 s (reported as stalled, and logged).
 */
export async function drainSealer(sql: postgres.Sql, log: (message: string) => void): Promise<{ pending: number; drain_s: number; stalled?: true }> {
  const started = performance.now();
  const first = await pendingEvents(sql);
  let pending = first;
  let progress = performance.now();
  while (pending > 0) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const next = await pendingEvents(sql);
    if (next < pending) progress = performance.now();
    pending = next;
    if (pending > 0 && performance.now() - progress > 30_000) {
      log(`the sealer sealed nothing in 30 s; ${pending} events still pending`);
      return { pending: first, drain_s: round((performance.now() - started) / 1000, 1), stalled: true };
    }
  }
  return { pending: first, drain_s: round((performance.now() - started) / 1000, 1) };
}

