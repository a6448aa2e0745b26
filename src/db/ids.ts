import { v7 } from 'uuid';

/**
 * A new server-assigned id: a UUIDv7 (RFC 9562 §5.7), random in its last 74 bits and ordered by
 * its first 48, the creation time in milliseconds. Rows keyed by new ids land at the right-hand
 * edge of their B-tree indexes instead of on a random page each: at 1M resources a random id made
 * every write touch (and, after a checkpoint, log whole) pages all over each index.
 */
export function newId(): string {
  return v7();
}
