import { v7 } from 'uuid';

/**
 * A new server-assigned id: a UUIDv7 (RFC 9562 §5.7). Its first 48 bits are the creation time in
 * milliseconds, then a counter (seeded at random every millisecond) keeps the ids of one
 * millisecond in order, and 42 bits are random. Rows keyed by new ids land at the right-hand edge
 * of their B-tree indexes instead of on a random page each: with random ids, at 1M Observations,
 * every write touched (and after a checkpoint logged whole) pages all over each index. The time
 * an id shows is no secret: a resource's first meta.lastUpdated, an AuditEvent's recorded.
 */
export function newId(): string {
  return v7();
}
