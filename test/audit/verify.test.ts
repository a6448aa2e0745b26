import { generateKeyPairSync } from 'node:crypto';
import { type SQL, sql } from 'drizzle-orm';
import { CompactSign, calculateJwkThumbprint, exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScopedAccess } from '../../src/auth/access-policy.ts';
import { contentHash, chainHash } from '../../src/audit/chain.ts';
import { eventIndexEntry, keyDigest } from '../../src/audit/event-keys.ts';
import { CHECKPOINT_TYPE, sealPending } from '../../src/audit/sealer.ts';
import { type VerifyRange, type VerifyResult, VerifyRangeError, parseVerifyRange, verifyAuditTrail } from '../../src/audit/verify.ts';
import { FhirError } from '../../src/fhir/errors.ts';
import { auditVerifyOperation } from '../../src/operations/audit-verify.ts';
import { BASE_URL, type TestBaton, startBaton } from '../support/baton.ts';
import { AUDIT, auditEvent, recordEvents } from './sealed-trail.ts';

/** 35 sealed events; checkpoints at 10, 20 and 30. */
const EVENTS = 35;
let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
  for (let i = 0; i < 5; i++) await recordEvents(baton.db, Array.from({ length: EVENTS / 5 }, () => auditEvent(`member-${i}`)));
  await sealPending({ db: baton.db, audit: AUDIT });
});
afterAll(() => baton?.close());

const ROLLBACK = new Error('rollback');

/** Verifies the trail as the statements leave it, with the append-only triggers off, then undoes them. */
async function verifyTampered(statements: SQL[], range: VerifyRange = {}): Promise<VerifyResult> {
  let result: VerifyResult | undefined;
  await baton.db
    .transaction(async (tx) => {
      await tx.execute(sql`SET LOCAL session_replication_role = replica`);
      for (const statement of statements) await tx.execute(statement);
      result = await verifyAuditTrail(tx, range);
      throw ROLLBACK;
    })
    .catch((error: unknown) => {
      if (error !== ROLLBACK) throw error;
    });
  return result as VerifyResult;
}

const eventAt = (position: number) => sql`(SELECT event_seq FROM audit_chain WHERE position = ${position})`;

async function chainRow(position: number): Promise<{ chain_hash: string; event_seq: number }> {
  const [row] = await baton.db.execute<{ chain_hash: string; event_seq: number }>(
    sql`SELECT chain_hash, event_seq::int AS event_seq FROM audit_chain WHERE position = ${position}`,
  );
  return row;
}

describe('verifyAuditTrail', () => {
  it('verifies an untouched trail: every position checked, the last checkpoint named', async () => {
    const result = await verifyAuditTrail(baton.db);
    expect(result).toEqual({ verified: true, checkedEvents: EVENTS, lastCheckpoint: { position: 30, time: expect.any(String) } });
    expect(await verifyAuditTrail(baton.db, { from: 12, to: 25 })).toEqual({ verified: true, checkedEvents: 14, lastCheckpoint: { position: 20, time: expect.any(String) } });
    expect(await verifyAuditTrail(baton.db, { from: 36 })).toEqual({ verified: true, checkedEvents: 0 });
  });

  it.each<[string, () => Promise<SQL[]>, number, RegExp]>([
    ['an event changed', async () => [sql`UPDATE audit_events SET content = replace(content, '"outcome":"0"', '"outcome":"4"') WHERE seq = ${eventAt(7)}`], 7, /event sealed at position 7 .* has changed since it was sealed/],
    ['an event changed into text that is not JSON', async () => [sql`UPDATE audit_events SET content = 'x' WHERE seq = ${eventAt(7)}`], 7, /has changed since it was sealed/],
    ['an event deleted', async () => [sql`DELETE FROM audit_events WHERE seq = ${eventAt(7)}`], 7, /event sealed at position 7 .* has been deleted/],
    ['a chain row deleted', async () => [sql`DELETE FROM audit_chain WHERE position = 7`], 7, /chain position 7 is missing/],
    [
      'the contents of two events swapped',
      async () => [
        sql`UPDATE audit_events e SET content = o.content FROM audit_events o
            WHERE (e.seq, o.seq) IN ((${eventAt(4)}, ${eventAt(9)}), (${eventAt(9)}, ${eventAt(4)}))`,
      ],
      4,
      /position 4 .* has changed since it was sealed/,
    ],
    [
      'two chain rows swapped',
      async () => [
        sql`UPDATE audit_chain SET position = -position WHERE position IN (4, 5)`,
        sql`UPDATE audit_chain SET position = 9 - (-position) WHERE position IN (-4, -5)`,
      ],
      4,
      /chain hash at position 4 does not follow from position 3/,
    ],
    [
      'an event rewritten with the chain recomputed after it',
      async () => rewriteFrom(15),
      20,
      /chain hash at position 20 differs from the one its checkpoint signed/,
    ],
    ['a checkpoint whose chain hash was altered', async () => [sql`UPDATE audit_checkpoints SET chain_hash = ${'f'.repeat(64)} WHERE position = 10`], 10, /checkpoint at position 10 differs from what its signature covers/],
    ['a checkpoint forged with another key', async () => [sql`UPDATE audit_checkpoints SET jws = ${await forgedCheckpoint(20)} WHERE position = 20`], 20, /checkpoint at position 20 is signed by a key that is not a trusted audit key/],
    [
      'a checkpoint whose signature was cut and pasted from another',
      async () => [sql`UPDATE audit_checkpoints SET jws = (SELECT jws FROM audit_checkpoints WHERE position = 10) WHERE position = 20`],
      20,
      /checkpoint at position 20 differs from what its signature covers/,
    ],
    ['a checkpoint with a broken signature', async () => [sql`UPDATE audit_checkpoints SET jws = jws || 'A' WHERE position = 10`], 10, /signature of the checkpoint at position 10 does not verify/],
    [
      'an event inserted behind the sealer with a forged low txid',
      async () => [sql`INSERT INTO audit_events (txid, event_id, recorded, content) VALUES ('3'::xid8, 'forged', now(), ${JSON.stringify(auditEvent())})`],
      1,
      /event seq \d+ \(txid 3\) lies before position 1 in sealing order but is not in the chain/,
    ],
    ['the end of the chain cut off', async () => [sql`DELETE FROM audit_chain WHERE position > 25`, sql`DELETE FROM audit_events e WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_seq = e.seq)`], 26, /a checkpoint signs position 30 but the chain ends at position 25/],
    [
      'an index row deleted (the event hidden from search)',
      async () => [sql`DELETE FROM audit_index WHERE position = 12`],
      12,
      /search index has lost the AuditEvent of position 12/,
    ],
    [
      'a key removed from an index row (the event hidden from one search)',
      async () => [sql`UPDATE audit_index SET keys = keys[2:] WHERE position = 12`],
      12,
      /search index of position 12 differs from the sealed event/,
    ],
    [
      'a key added to an index row (the event found by a search it does not match)',
      async () => [sql`UPDATE audit_index SET keys = array_append(keys, '00000000-0000-4000-8000-000000000001'::uuid) WHERE position = 12`],
      12,
      /search index of position 12 differs from the sealed event/,
    ],
    [
      'an index row pointing at another event',
      async () => [sql`UPDATE audit_index SET event_seq = ${eventAt(13)} WHERE position = 12`],
      12,
      /search index of position 12 differs from the sealed event/,
    ],
    [
      "an index row's instant moved",
      async () => [sql`UPDATE audit_index SET recorded = recorded - interval '1 day' WHERE position = 12`],
      12,
      /search index of position 12 differs from the sealed event/,
    ],
    [
      "an index row's string changed",
      async () => [sql`UPDATE audit_index_strings SET value = 'elsewhere' WHERE position = 12`],
      12,
      /search index of position 12 differs from the sealed event/,
    ],
  ])('detects %s', async (_name, tampering, position, reason) => {
    const result = await verifyTampered(await tampering());
    expect(result).toMatchObject({ verified: false, firstInvalidPosition: position, reason: expect.stringMatching(reason), checkedEvents: position - 1 });
    expect(result.lastCheckpoint?.position ?? 0).toBeLessThan(position);
    expect(await verifyAuditTrail(baton.db)).toMatchObject({ verified: true });
  });

  it('checks only the range asked for, starting from the chain hash before it', async () => {
    const tampering = [sql`UPDATE audit_events SET content = replace(content, '"outcome":"0"', '"outcome":"4"') WHERE seq = ${eventAt(7)}`];
    expect(await verifyTampered(tampering, { from: 8 })).toMatchObject({ verified: true, checkedEvents: EVENTS - 7 });
    expect(await verifyTampered(tampering, { to: 6 })).toMatchObject({ verified: true, checkedEvents: 6 });
    expect(await verifyTampered(tampering, { from: 5, to: 9 })).toMatchObject({ verified: false, firstInvalidPosition: 7, checkedEvents: 2 });
  });
});

/** Rewrites the event at `position` and recomputes every content and chain hash from there, as a forger with database access could. */
async function rewriteFrom(position: number): Promise<SQL[]> {
  const rows = await baton.db.execute<{ position: number; seq: number; content: string }>(
    sql`SELECT c.position::int AS position, e.seq::int AS seq, e.content FROM audit_chain c JOIN audit_events e ON e.seq = c.event_seq WHERE c.position >= ${position} ORDER BY c.position`,
  );
  let previous = (await chainRow(position - 1)).chain_hash;
  const statements: SQL[] = [];
  for (const row of rows) {
    const content = row.position === position ? row.content.replace('"outcome":"0"', '"outcome":"4"') : row.content;
    const hash = contentHash(JSON.parse(content));
    previous = chainHash(previous, hash);
    statements.push(sql`UPDATE audit_events SET content = ${content} WHERE seq = ${row.seq}`);
    statements.push(sql`UPDATE audit_chain SET content_hash = ${hash}, chain_hash = ${previous} WHERE position = ${row.position}`);
  }
  // The search index too, or that alone would show the change.
  const rewritten = JSON.parse(rows[0].content.replace('"outcome":"0"', '"outcome":"4"'));
  const keys = eventIndexEntry(rewritten).keys.map(keyDigest);
  statements.push(sql`UPDATE audit_index SET keys = ${sql.param(keys)}::uuid[] WHERE position = ${position}`);
  return statements;
}

/** A well-formed checkpoint over the true chain hash, signed with a key that is not Baton's. */
async function forgedCheckpoint(position: number): Promise<string> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const [row] = await baton.db.execute<{ chain_hash: string; time: string }>(
    sql`SELECT chain_hash, to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS time FROM audit_checkpoints WHERE position = ${position}`,
  );
  const payload = { position, chain_hash: row.chain_hash, time: row.time };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'ES384', kid: await calculateJwkThumbprint(await exportJWK(privateKey)), typ: CHECKPOINT_TYPE })
    .sign(privateKey);
}

describe('parseVerifyRange', () => {
  it.each([
    [undefined, undefined, {}],
    ['3', undefined, { from: 3 }],
    ['3', '3', { from: 3, to: 3 }],
  ])('reads from=%s to=%s', (from, to, range) => {
    expect(parseVerifyRange(from, to)).toEqual({ from: undefined, to: undefined, ...range });
  });

  it.each([
    ['0', undefined, 'from must be a positive integer'],
    ['-1', undefined, 'from must be a positive integer'],
    ['1.5', undefined, 'from must be a positive integer'],
    [undefined, 'ten', 'to must be a positive integer'],
    [undefined, '99999999999999999999', 'to must be a positive integer'],
    ['5', '4', 'from must not be greater than to'],
  ])('refuses from=%s to=%s', (from, to, message) => {
    expect(() => parseVerifyRange(from, to)).toThrow(VerifyRangeError);
    expect(() => parseVerifyRange(from, to)).toThrow(message);
  });
});

describe('AuditEvent/$verify', () => {
  const caller = (scopes: string[]) => ({ ...baton.ctx, access: new ScopedAccess({ clientId: 'auditor', kind: 'internal', scopes }, BASE_URL) });

  it('answers an auditor the stable Parameters shape', async () => {
    const parameters = await auditVerifyOperation(caller(['system/AuditEvent.rs']), new URLSearchParams());
    expect(parameters).toEqual({
      resourceType: 'Parameters',
      parameter: [
        { name: 'verified', valueBoolean: true },
        { name: 'checkedEvents', valueInteger: EVENTS },
        { name: 'lastCheckpoint', part: [{ name: 'position', valueInteger: 30 }, { name: 'time', valueInstant: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/) }] },
      ],
    });
  });

  it('names the first invalid position and the reason when the trail does not verify', async () => {
    let parameters: unknown;
    await baton.db
      .transaction(async (tx) => {
        await tx.execute(sql`SET LOCAL session_replication_role = replica`);
        await tx.execute(sql`DELETE FROM audit_chain WHERE position = 22`);
        parameters = await auditVerifyOperation({ ...caller(['system/AuditEvent.rs']), q: tx }, new URLSearchParams('from=11'));
        throw ROLLBACK;
      })
      .catch((error: unknown) => {
        if (error !== ROLLBACK) throw error;
      });
    expect(parameters).toEqual({
      resourceType: 'Parameters',
      parameter: [
        { name: 'verified', valueBoolean: false },
        { name: 'checkedEvents', valueInteger: 11 },
        { name: 'lastCheckpoint', part: [{ name: 'position', valueInteger: 20 }, { name: 'time', valueInstant: expect.any(String) }] },
        { name: 'firstInvalidPosition', valueInteger: 22 },
        { name: 'reason', valueString: 'chain position 22 is missing' },
      ],
    });
  });

  it.each([['system/Patient.rs'], ['system/AuditEvent.c']])('is refused (403) to a caller holding %s', async (scope) => {
    const refusal = await auditVerifyOperation(caller([scope]), new URLSearchParams()).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(FhirError);
    expect(refusal).toMatchObject({ status: 403, outcome: { resourceType: 'OperationOutcome', issue: [{ code: 'forbidden' }] } });
  });

  it.each(['from=0', 'to=x', 'from=9&to=3', 'from=1&from=2'])('answers 400 with an OperationOutcome to %s', async (query) => {
    const refusal = await auditVerifyOperation(caller(['system/AuditEvent.rs']), new URLSearchParams(query)).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(FhirError);
    expect(refusal).toMatchObject({ status: 400, outcome: { issue: [{ severity: 'error', code: 'invalid' }] } });
  });
});
