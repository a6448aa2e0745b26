import { pino, type Logger } from 'pino';

/**
 * Structured JSON logs. They carry ids, codes, durations and hashes only: never names, birth
 * dates, addresses, member ids or bodies (no PHI in logs).
 */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'baton' }, timestamp: pino.stdTimeFunctions.isoTime });
}

export type { Logger };
