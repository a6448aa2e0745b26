import { createHash, timingSafeEqual } from 'node:crypto';

/** Whether a presented bearer value is the admin token; digests are compared, so neither its length nor a prefix leaks through timing. */
export function isAdminToken(presented: string, adminToken: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(presented), digest(adminToken));
}
