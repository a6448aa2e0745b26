import { FhirError, outcome } from './errors.ts';

/**
 * PostgreSQL errors a client can cause by racing another client: two creates of the same id
 * (unique violation), a serialization failure or a deadlock between transactions. They are
 * conflicts the client may retry (409), not server faults.
 */
const RETRYABLE: Record<string, string> = {
  '23505': 'A concurrent request wrote the same resource; retry',
  '40001': 'A concurrent transaction conflicted with this one; retry',
  '40P01': 'A concurrent transaction conflicted with this one (deadlock); retry',
};

export function conflictFromDatabase(error: unknown): FhirError | undefined {
  // drizzle wraps the driver's error (DrizzleQueryError); the SQLSTATE is on its cause.
  for (let e = error as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    const message = typeof e.code === 'string' ? RETRYABLE[e.code] : undefined;
    if (message) return new FhirError(409, outcome('error', 'conflict', message));
  }
  return undefined;
}
