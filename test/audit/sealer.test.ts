import { generateKeyPairSync } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, exportJWK, importJWK, type JWK } from 'jose';
import { pino } from 'pino';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_CHAIN_HASH, chainHash, contentHash } from '../../src/audit/chain.ts';
import { CHECKPOINT_TYPE, sealPending, startAuditSealer } from '../../src/audit/sealer.ts';
import { startSealerThread } from '../../src/audit/sealer-thread.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { connectDatabase } from '../../src/db/connection.ts';
import { type TestBaton, body, startBaton } from '../support/baton.ts';
import { AUDIT, auditEvent, chainOrder, recordEvents } from './sealed-trail.ts';

let baton: TestBaton;
beforeAll(async () => {
  baton = await startBaton();
});
afterAll(() => baton?.close());

const deps = () => ({ db: baton.db, audit: AUDIT });

async function head(): Promise<number> {
  const [row] = await baton.db.execute<{ n: number }>(sql`SELECT coalesce(max(position), 0)::int AS n FROM audit_chain`);
  return row.n;
}

async function checkpoints(after: number): Promise<{ position: number; chain_hash: string; jws: string }[]> {
  return baton.db.execute(sql`SELECT position::int AS position, chain_hash, jws FROM audit_checkpoints WHERE position > ${after} ORDER BY position`);
}

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe('sealPending', () => {
  it('chains events from the genesis hash in (txid, seq) order: transaction by transaction, in insertion order within one', async () => {
    const first = [auditEvent('p1'), auditEvent('p1'), auditEvent('p2')];
    const second = [auditEvent('p3'), auditEvent('p1')];
    await baton.db.transaction((tx) => recordEvents(tx, first));
    await baton.db.transaction((tx) => recordEvents(tx, second));

    expect(await sealPending(deps())).toEqual({ sealed: 5 });
    const rows = await baton.db.execute<{ position: number; content_hash: string; chain_hash: string }>(
      sql`SELECT position::int AS position, content_hash, chain_hash FROM audit_chain ORDER BY position`,
    );
    const events = [...first, ...second];
    expect(await chainOrder(baton.db)).toEqual(events.map((e) => e.id));
    let previous = GENESIS_CHAIN_HASH;
    rows.forEach((row, i) => {
      expect(row.position).toBe(i + 1);
      expect(row.content_hash).toBe(contentHash(events[i]));
      previous = chainHash(previous, row.content_hash);
      expect(row.chain_hash).toBe(previous);
    });
    expect(await sealPending(deps())).toEqual({ sealed: 0 });
  });

  it('copies each sealed AuditEvent into the FHIR store as version 1, last updated when recorded, for auditors to read and search', async () => {
    const event = auditEvent('p-search');
    await recordEvents(baton.db, [event]);
    await sealPending(deps());
    const auditor = await baton.token({ scopes: ['system/AuditEvent.rs'] });

    const read = await baton.request(`/fhir/AuditEvent/${event.id}`, { token: auditor });
    expect(read.status).toBe(200);
    const stored = await body(read);
    expect(stored).toEqual({ ...event, meta: { ...event.meta, versionId: '1', lastUpdated: event.recorded } });

    const search = await body(await baton.request(`/fhir/AuditEvent?_id=${event.id}`, { token: auditor }));
    expect(search.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([event.id]);
    const byPatient = await body(await baton.request('/fhir/AuditEvent?entity=Patient/p-search', { token: auditor }));
    expect(byPatient.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([event.id]);
  });

  it('seals a backlog larger than one batch, each batch in a transaction of its own', async () => {
    await sealPending(deps());
    const before = await head();
    for (let i = 0; i < 3; i++) await recordEvents(baton.db, Array.from({ length: 800 }, () => auditEvent(`bulk-${i}`)));
    expect(await sealPending(deps())).toEqual({ sealed: 2400 });
    expect(await head()).toBe(before + 2400);
    expect(await verifyAuditTrail(baton.db)).toMatchObject({ verified: true, checkedEvents: before + 2400 });
  });

  it('signs a checkpoint every checkpointEvery positions over {position, chain_hash, time} with the audit key kept in the database', async () => {
    await sealPending(deps());
    const before = await head();
    const lastBefore = (await checkpoints(0)).at(-1)?.position ?? 0;
    await recordEvents(baton.db, Array.from({ length: 25 }, () => auditEvent()));
    await sealPending(deps());

    const made = await checkpoints(before);
    const expected: number[] = [];
    for (let p = lastBefore + 10; p <= before + 25; p += 10) if (p > before) expected.push(p);
    expect(made.map((c) => c.position)).toEqual(expected);
    const [key] = await baton.db.execute<{ kid: string; public_jwk: JWK | string }>(sql`SELECT kid, public_jwk FROM audit_signing_keys`);
    const publicJwk = typeof key.public_jwk === 'string' ? JSON.parse(key.public_jwk) : key.public_jwk;
    for (const checkpoint of made) {
      expect(decodeProtectedHeader(checkpoint.jws)).toEqual({ alg: 'ES384', kid: key.kid, typ: CHECKPOINT_TYPE });
      const { payload } = await compactVerify(checkpoint.jws, await importJWK(publicJwk, 'ES384'));
      const signed = JSON.parse(new TextDecoder().decode(payload));
      const [row] = await baton.db.execute<{ chain_hash: string }>(sql`SELECT chain_hash FROM audit_chain WHERE position = ${checkpoint.position}`);
      expect(signed).toEqual({ position: checkpoint.position, chain_hash: row.chain_hash, time: expect.any(String) });
      expect(Math.abs(Date.parse(signed.time) - Date.now())).toBeLessThan(60_000);
    }
  });

  it('signs a checkpoint at the head once checkpointSeconds have passed with positions sealed since the last one, even with nothing new to seal', async () => {
    await recordEvents(baton.db, [auditEvent()]);
    await sealPending({ db: baton.db, audit: { ...AUDIT, checkpointEvery: 1_000_000 } });
    const tip = await head();
    expect((await checkpoints(0)).at(-1)?.position).toBeLessThan(tip);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await sealPending({ db: baton.db, audit: { ...AUDIT, checkpointEvery: 1_000_000, checkpointSeconds: 1 } })).toEqual({ sealed: 0 });
    expect((await checkpoints(0)).at(-1)?.position).toBe(tip);
    // Nothing sealed since: no second checkpoint of the same head.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await sealPending({ db: baton.db, audit: { ...AUDIT, checkpointSeconds: 1 } });
    expect((await checkpoints(tip - 1)).map((c) => c.position)).toEqual([tip]);
  });

  it('signs with BATON_AUDIT_KEY when one is configured; verification then trusts that key only', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const kid = await calculateJwkThumbprint(await exportJWK(privateKey));
    await sealPending(deps());
    const before = await head();
    await recordEvents(baton.db, Array.from({ length: 10 }, () => auditEvent()));
    await sealPending({ db: baton.db, audit: { ...AUDIT, key: privateKey } });

    const made = await checkpoints(before);
    expect(made.length).toBeGreaterThan(0);
    for (const checkpoint of made) expect(decodeProtectedHeader(checkpoint.jws).kid).toBe(kid);
    // Earlier checkpoints carry the database key's signature, which a configured key does not vouch for.
    const result = await verifyAuditTrail(baton.db, { auditKey: privateKey });
    expect(result).toMatchObject({ verified: false, reason: expect.stringContaining('not a trusted audit key') });
    expect(await verifyAuditTrail(baton.db, { from: made[0].position, auditKey: privateKey })).toMatchObject({ verified: true });
    expect(await verifyAuditTrail(baton.db, { from: made[0].position })).toMatchObject({
      verified: false,
      firstInvalidPosition: made[0].position,
      reason: expect.stringContaining('not a trusted audit key'),
    });
  });
});

describe('startAuditSealer', () => {
  it('seals in the background, warns that a key kept in the database protects only against those who cannot write it, and stops cleanly', async () => {
    const { logger, lines } = capturingLogger();
    await sealPending(deps());
    const before = await head();
    const sealer = startAuditSealer(deps(), logger);
    await recordEvents(baton.db, Array.from({ length: 30 }, () => auditEvent()));
    await until(async () => (await head()) === before + 30, 'the background sealer');
    await sealer.stop();

    expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([expect.stringContaining('do not protect the trail against someone who can write the database')]);
    expect(lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    await recordEvents(baton.db, [auditEvent()]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await head()).toBe(before + 30);
    await sealPending(deps());
  });
});

describe.runIf(process.env.DATABASE_URL)('sealing on PostgreSQL, with concurrent transactions and processes', () => {
  it('does not seal past a transaction still running, and seals its event before later ones once it commits', async () => {
    await sealPending(deps());
    const before = await head();
    const early = auditEvent('early');
    const late = auditEvent('late');
    const client = postgres(baton.databaseUrl as string, { max: 1, onnotice: () => undefined });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let inserted!: () => void;
    const hasInserted = new Promise<void>((resolve) => (inserted = resolve));
    const transaction = client.begin(async (tx) => {
      await tx`INSERT INTO audit_events (event_id, recorded, content) VALUES (${early.id}, ${early.recorded}, ${JSON.stringify(early)})`;
      inserted();
      await released;
    });
    try {
      await hasInserted;
      await recordEvents(baton.db, [late]);
      await sealPending(deps());
      expect(await head()).toBe(before);
    } finally {
      release();
      await transaction;
      await client.end();
    }
    await until(async () => {
      await sealPending(deps());
      return (await head()) === before + 2;
    }, 'both events sealed once the earlier transaction has committed');
    expect((await chainOrder(baton.db)).slice(-2)).toEqual([early.id, late.id]);
  });

  it('two sealers of two processes take turns: every event sealed once, no fork, no failed pass', async () => {
    await sealPending(deps());
    const before = await head();
    const other = await connectDatabase({ databaseUrl: baton.databaseUrl, dataDir: 'memory://', maxConnections: 5 });
    const { logger, lines } = capturingLogger();
    const sealers = [startAuditSealer(deps(), logger), startAuditSealer({ db: other, audit: AUDIT }, logger)];
    try {
      await Promise.all(Array.from({ length: 40 }, (_, i) => recordEvents(i % 2 ? other : baton.db, Array.from({ length: 25 }, () => auditEvent(`c${i}`)))));
      await until(async () => (await head()) === before + 1000, 'the two sealers');
    } finally {
      await Promise.all(sealers.map((s) => s.stop()));
      await other.close();
    }
    expect(lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    const [chain] = await baton.db.execute<{ n: number; events: number; positions: number }>(
      sql`SELECT count(*)::int AS n, count(DISTINCT event_seq)::int AS events, max(position)::int AS positions FROM audit_chain`,
    );
    const [events] = await baton.db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM audit_events`);
    expect(chain).toEqual({ n: events.n, events: events.n, positions: events.n });
    expect(await verifyAuditTrail(baton.db, { from: before + 1 })).toMatchObject({ verified: true, checkedEvents: 1000 });
  });
});

describe('the sealer thread', () => {
  it.runIf(process.env.DATABASE_URL)('seals on a thread of its own connections with the configured key, verifiably, and stops cleanly', async () => {
    await sealPending(deps());
    const before = await head();
    const { logger, lines } = capturingLogger();
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const thread = startSealerThread({ databaseUrl: baton.databaseUrl as string, audit: { ...AUDIT, key: privateKey }, logLevel: 'warn' }, logger);
    try {
      await recordEvents(baton.db, Array.from({ length: 1200 }, (_, i) => auditEvent(`thread-${i}`)));
      await until(async () => (await head()) === before + 1200, 'the sealer thread', 60_000);
    } finally {
      await thread.stop();
    }
    expect(lines).toEqual([]);
    const made = await checkpoints(before);
    expect(made.length).toBeGreaterThan(0);
    const kid = await calculateJwkThumbprint(await exportJWK(privateKey));
    for (const checkpoint of made) expect(decodeProtectedHeader(checkpoint.jws).kid).toBe(kid);
    expect(await verifyAuditTrail(baton.db, { from: made[0].position, auditKey: privateKey })).toMatchObject({ verified: true });
    // Stopped: nothing seals what comes next.
    await recordEvents(baton.db, [auditEvent()]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await head()).toBe(before + 1200);
    await sealPending(deps());
  });

  it('starts another thread when one ends, logging codes only, until stopped', async () => {
    const { logger, lines } = capturingLogger();
    // An unusable URL ends the thread as it starts.
    const thread = startSealerThread({ databaseUrl: 'not a url', audit: AUDIT, logLevel: 'warn' }, logger);
    try {
      await until(async () => lines.filter((l) => l.msg === 'audit sealer thread ended; starting another').length >= 2, 'a second thread to end', 20_000);
    } finally {
      await thread.stop();
    }
    const ends = lines.filter((l) => l.msg === 'audit sealer thread ended; starting another');
    expect(ends[0]).toMatchObject({ level: 50, code: 1 });
    expect(lines.filter((l) => l.msg === 'audit sealer thread failed')[0]).toEqual(expect.objectContaining({ error: 'TypeError' }));
    expect(JSON.stringify(lines)).not.toContain('not a url');
    const count = lines.length;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(lines.length).toBe(count);
  });
});

describe('a failing pass', () => {
  it('is logged by error class and SQLSTATE only, never with the event, once for passes failing in a row', async () => {
    const { logger, lines } = capturingLogger();
    await sealPending(deps());
    await baton.db.execute(sql`INSERT INTO audit_events (event_id, recorded, content) VALUES ('broken', now(), '{"name": "Jane Doe"')`);
    const sealer = startAuditSealer(deps(), logger);
    await until(async () => lines.some((l) => l.level === 50), 'a failed pass');
    // The passes after it (500 ms, 1 s later: test/background.test.ts) fail too, unlogged.
    await new Promise((resolve) => setTimeout(resolve, 1_800));
    await sealer.stop();
    const failures = lines.filter((l) => l.level === 50);
    expect(failures).toEqual([expect.objectContaining({ msg: 'audit sealing pass failed; retrying', error: 'SyntaxError' })]);
    expect(JSON.stringify(lines)).not.toContain('Jane');
  });
});
