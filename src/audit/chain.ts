import { hash } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * The hash chain over the audit trail (issue 4), pure. An event's content hash is the SHA-256
 * of its RFC 8785 (JCS) canonical JSON, so the hash depends on the AuditEvent and not on how its
 * JSON text happens to be spelled. Position n's chain hash is SHA-256 over the ASCII text of
 * position n-1's chain hash followed by position n's content hash (both lowercase hex, 128
 * characters); before position 1 stands GENESIS_CHAIN_HASH. Changing, removing or reordering
 * any event therefore changes every chain hash after it.
 */

/** The chain hash "before" position 1: 64 zeros, the hex of 32 zero bytes. */
export const GENESIS_CHAIN_HASH = '0'.repeat(64);

/** Lowercase hex SHA-256 of the RFC 8785 canonical JSON of a parsed JSON value. */
export function contentHash(value: unknown): string {
  let canonical: string | undefined;
  try {
    canonical = canonicalize(value);
  } catch {
    // RFC 8785 §3.2.2.2 admits no lone surrogates (I-JSON), yet JSON text may escape one and a
    // caller's input may carry it into an AuditEvent. Refusing would stop the sealer for good;
    // U+FFFD in their place keeps the hash defined and the same on every recomputation.
    canonical = canonicalize(replaceLoneSurrogates(value));
  }
  if (canonical === undefined) throw new TypeError('Only JSON values have a content hash');
  return sha256Hex(canonical);
}

/** Position n's chain hash from position n-1's chain hash (GENESIS_CHAIN_HASH for n = 1) and event n's content hash. */
export function chainHash(previousChainHash: string, eventContentHash: string): string {
  return sha256Hex(previousChainHash + eventContentHash);
}

function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

// With the u flag a surrogate pair is one code point, so \p{Cs} matches only lone surrogates.
const LONE_SURROGATE = /\p{Cs}/gu;

function replaceLoneSurrogates(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(LONE_SURROGATE, '\uFFFD');
  if (Array.isArray(value)) return value.map(replaceLoneSurrogates);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key.replace(LONE_SURROGATE, '\uFFFD'), replaceLoneSurrogates(item)]));
}
