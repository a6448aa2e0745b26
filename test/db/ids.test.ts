import { describe, expect, it } from 'vitest';
import { newId } from '../../src/db/ids.ts';
import { UUID_V7 } from '../support/baton.ts';

describe('newId', () => {
  it('makes UUIDv7s: version 7, RFC 9562 variant, the creation time in the first 48 bits', () => {
    const before = Date.now();
    const id = newId();
    const after = Date.now();
    expect(id).toMatch(UUID_V7);
    const millis = Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    expect(millis).toBeGreaterThanOrEqual(before);
    expect(millis).toBeLessThanOrEqual(after);
  });

  it('orders ids by creation and never repeats one, within a millisecond too', () => {
    const ids = Array.from({ length: 10_000 }, () => newId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });
});
