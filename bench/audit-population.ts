import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { AuditEvent } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import { v7 } from 'uuid';
import { toAuditEvent } from '../src/audit/balp.ts';
import { chainHash, GENESIS_CHAIN_HASH } from '../src/audit/chain.ts';
import { type IndexColumns, insertIndexColumns } from '../src/audit/event-index.ts';
import type { AuditCaller, AuditRecord } from '../src/audit/record.ts';
import { authUrls } from '../src/auth/smart-configuration.ts';
import type { Database } from '../src/db/connection.ts';

/*
 * bench:audit's synthetic audit trail: the AuditEvents a Baton would have recorded over two
 * years of partner traffic, built with the production builder (toAuditEvent) from audit
 * records shaped as src/audit/trail.ts and middleware.ts make them. Traffic comes in sessions:
 * a client obtains a token (one audited token request), then makes a burst of requests within
 * the token's five minutes about one to three members; most requests are reads and searches,
 * some are writes, about 3% fail. Client activity is skewed (a few busy partners, a long tail).
 *
 * Members and clients are drawn from fixed lists derived from a seed, so that a later run can
 * query them without reading the database; everything else (event, request and token ids) is
 * random. Events are generated in chunks each covering its own slice of the time span, in time
 * order, and written as the writer and the sealer would have left them (loadTrail).
 */

/** The FHIR base the events were recorded by; client identifiers are namespaced by its issuer. */
export const AUDITED_SERVER = 'https://payer.bench.baton.test/fhir';
export const CLIENT_SYSTEM = authUrls(AUDITED_SERVER).issuer;

/** [from, to): two whole calendar years, so "a year" is one of them. */
export const SPAN = { from: Date.UTC(2023, 0, 1), to: Date.UTC(2025, 0, 1), years: [2023, 2024] };

/** A token lives five minutes (src/auth/access-token.ts); a session's requests fall within it. */
const TOKEN_SECONDS = 300;

/** splitmix32: a small seeded generator, so the member and client lists are the same every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
}

function seededUuid(random: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16));
  hex[12] = '4';
  hex[16] = '89ab'[Math.floor(random() * 4)];
  const h = hex.join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export interface AuditPopulation {
  events: number;
  patients: number;
  clients: number;
}

export interface Cast {
  /** Patient ids (as Baton's creates make them: UUIDs). */
  patients: string[];
  /** Registered client ids (UUIDs, as client registration makes them). */
  clients: string[];
}

export function castOf(population: Pick<AuditPopulation, 'patients' | 'clients'>): Cast {
  const random = seeded(0xba70a);
  return {
    patients: Array.from({ length: population.patients }, () => seededUuid(random)),
    clients: Array.from({ length: population.clients }, () => seededUuid(random)),
  };
}

/** Picks index i with weight 1/(i+1)^s: a Zipf-like skew (a few busy partners and members, a long tail). */
function skewedPicker(n: number, s: number): (random: () => number) => number {
  const cumulative = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) cumulative[i] = total += 1 / (i + 1) ** s;
  return (random) => {
    const target = random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid] < target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

interface Session {
  caller: AuditCaller;
  address: string;
  start: number;
}

/** Resource types a payer's partners read and search per member, with the search a client would send. */
const MEMBER_TYPES = [
  { type: 'Patient', search: (p: string) => `_id=${p}` },
  { type: 'Coverage', search: (p: string) => `beneficiary=Patient/${p}` },
  { type: 'ExplanationOfBenefit', search: (p: string) => `patient=Patient/${p}&_count=50` },
  { type: 'Observation', search: (p: string) => `patient=Patient/${p}&category=laboratory` },
  { type: 'Condition', search: (p: string) => `patient=Patient/${p}` },
  { type: 'MedicationRequest', search: (p: string) => `patient=Patient/${p}&status=active` },
  { type: 'Encounter', search: (p: string) => `patient=${p}&date=ge2022-01-01` },
];

const FAILURES: { status: number; outcome: AuditRecord['outcome']; text: string; weight: number }[] = [
  { status: 404, outcome: '4', text: 'Resource not found', weight: 40 },
  { status: 403, outcome: '4', text: 'The client has no grant for this member', weight: 30 },
  { status: 400, outcome: '4', text: 'Unknown search parameter value', weight: 15 },
  { status: 422, outcome: '4', text: 'The resource does not conform to its profile', weight: 8 },
  { status: 401, outcome: '4', text: 'The access token has expired', weight: 5 },
  { status: 500, outcome: '8', text: 'Internal server error; the request id identifies it in the logs', weight: 2 },
];
const FAILURE_WEIGHT = FAILURES.reduce((sum, f) => sum + f.weight, 0);

/** An event id as the server makes one (src/db/ids.ts: a UUIDv7), at the event's own time. */
const eventId = (at: number): string => v7({ msecs: at });

/** Generates the AuditEvents of one chunk: sessions starting in [from, to) until `count` events. */
export class TrailGenerator {
  private readonly cast: Cast;
  private readonly pickClient: (random: () => number) => number;
  private readonly pickPatient: (random: () => number) => number;
  private readonly addresses: string[];

  constructor(population: AuditPopulation) {
    this.cast = castOf(population);
    this.pickClient = skewedPicker(population.clients, 0.8);
    this.pickPatient = skewedPicker(population.patients, 0.3);
    const random = seeded(0xadd7);
    this.addresses = this.cast.clients.map(() => `10.${Math.floor(random() * 256)}.${Math.floor(random() * 256)}.${1 + Math.floor(random() * 254)}`);
  }

  chunk(count: number, from: number, to: number): AuditEvent[] {
    const events: AuditEvent[] = [];
    const random = Math.random;
    while (events.length < count) {
      const client = this.pickClient(random);
      const session: Session = {
        caller: { clientId: this.cast.clients[client], kind: client % 10 === 0 ? 'internal' : 'partner', tokenId: randomUUID() },
        address: this.addresses[client],
        start: from + random() * (to - from),
      };
      events.push(this.tokenRequest(session));
      const members = Array.from({ length: 1 + Math.floor(random() * random() * 3) }, () => this.cast.patients[this.pickPatient(random)]);
      // Requests per token: 1 to ~60, most around ten.
      const requests = 1 + Math.floor(-Math.log(1 - random()) * 12);
      const offsets = Array.from({ length: requests }, () => 1000 + random() * (TOKEN_SECONDS - 2) * 1000).sort((a, b) => a - b);
      for (const offset of offsets) events.push(...this.request(session, session.start + offset, members, random));
    }
    events.length = count;
    return events;
  }

  private base(session: Session, at: number): Pick<AuditRecord, 'recorded' | 'caller' | 'sourceAddress' | 'requestId' | 'server'> {
    return { recorded: new Date(at).toISOString(), caller: session.caller, sourceAddress: session.address, requestId: randomUUID(), server: AUDITED_SERVER };
  }

  private tokenRequest(session: Session): AuditEvent {
    return toAuditEvent({ ...this.base(session, session.start), id: eventId(session.start), interaction: 'token', action: 'E', outcome: '0', httpStatus: 200, query: 'POST /auth/token' });
  }

  /** The events of one request: one per member it touched (BALP's patient-specific pattern), or its failure. */
  private request(session: Session, at: number, members: string[], random: () => number): AuditEvent[] {
    const base = this.base(session, at);
    const patient = members[Math.floor(random() * members.length)];
    const kind = MEMBER_TYPES[Math.floor(random() * MEMBER_TYPES.length)];
    const roll = random();
    if (roll < 0.032) {
      let pick = random() * FAILURE_WEIGHT;
      const failure = FAILURES.find((f) => (pick -= f.weight) < 0) ?? FAILURES[0];
      const read = random() < 0.5;
      const record: AuditRecord = {
        ...base,
        ...(failure.status === 401 ? { caller: undefined } : {}),
        id: eventId(at),
        interaction: read ? 'read' : 'search-type',
        action: read ? 'R' : 'E',
        outcome: failure.outcome,
        outcomeDescription: failure.text,
        httpStatus: failure.status,
        resource: { type: kind.type, ...(read ? { id: randomUUID() } : {}) },
        query: `GET ${AUDITED_SERVER}/${kind.type}${read ? '' : `?${kind.search(patient)}`}`,
      };
      return [toAuditEvent(record)];
    }
    if (roll < 0.135) {
      // Writes: creates and updates of member data (an update's version 2 to 5).
      const create = random() < 0.6;
      return [
        toAuditEvent({
          ...base,
          id: eventId(at),
          interaction: create ? 'create' : 'update',
          action: create ? 'C' : 'U',
          outcome: '0',
          httpStatus: create ? 201 : 200,
          resource: { type: kind.type === 'Patient' ? 'Observation' : kind.type, id: randomUUID(), versionId: create ? 1 : 2 + Math.floor(random() * 4) },
          patient,
        }),
      ];
    }
    if (roll < 0.5) {
      // Reads (and a few vreads) of one member's resource.
      const id = kind.type === 'Patient' ? patient : randomUUID();
      return [toAuditEvent({ ...base, id: eventId(at), interaction: 'read', action: 'R', outcome: '0', httpStatus: 200, resource: { type: kind.type, id }, patient })];
    }
    // Searches: mostly about one member; a few (by birth date, by name) touch several.
    const touched = roll < 0.53 ? members.concat(this.cast.patients[this.pickPatient(random)]) : [patient];
    const query = `GET ${AUDITED_SERVER}/${kind.type}?${kind.search(patient)}`;
    return [...new Set(touched)].map((member) =>
      toAuditEvent({ ...base, id: eventId(at), interaction: 'search-type', action: 'E', outcome: '0', httpStatus: 200, resource: { type: kind.type }, patient: member, query }),
    );
  }
}

/** One generated chunk with what the sealer computes for it (bench/audit-load-worker.ts), its columns as PostgreSQL array literals. */
export interface LoadedChunk {
  /** The chunk's place in the trail: 0, 1, … */
  order: number;
  contentHashes: string[];
  events: { seq: string; eventId: string; recorded: string; content: string };
  index: IndexColumns;
}

export interface LoadOptions {
  /** AuditEvents per database transaction. */
  chunk: number;
  /** Transactions in flight at once, each on a connection of its own. */
  parallel: number;
  /** Threads generating and hashing chunks. */
  threads: number;
}

/**
 * A worker's young generation: a chunk's short-lived values outgrow V8's default (16 MB), and
 * survivors copied into the old generation made garbage collection a third of a worker's time.
 */
const YOUNG_GENERATION_MB = 64;

/**
 * Writes the whole trail as the writer and the sealer would have left it, chunk after chunk in
 * time order: audit_events, the hash chain and the search index, nothing left to seal. Threads
 * generate chunks and hash their events; this thread chains them in order and writes `parallel`
 * chunks at once. The events carry one low txid and seq = position, so that sealing order is
 * position order and the trail verifies; the seq sequence is moved past them at the end. Commits
 * are not waited on by the disk (synchronous_commit off, per transaction): a crash would only lose
 * the tail of a load that is started again anyway.
 */
export async function loadTrail(db: Database, population: AuditPopulation, options: LoadOptions, progress: (done: number) => void): Promise<void> {
  const chunks = Math.ceil(population.events / options.chunk);
  const slice = (SPAN.to - SPAN.from) / chunks;
  // A worker thread does not inherit tsx's loader: the worker registers it before importing the TypeScript module.
  const module = JSON.stringify(new URL('./audit-load-worker.ts', import.meta.url).href);
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${module}); });`;
  const workers = Array.from({ length: options.threads }, () => new Worker(bootstrap, { eval: true, workerData: population, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } }));
  const generated = new Map<number, LoadedChunk>();
  let wake: (() => void) | undefined;
  for (const worker of workers) {
    worker.on('message', (chunk: LoadedChunk) => {
      generated.set(chunk.order, chunk);
      wake?.();
    });
  }
  let dispatched = 0;
  const dispatch = (worker: Worker) => {
    if (dispatched >= chunks) return;
    const index = dispatched++;
    const count = Math.min(options.chunk, population.events - index * options.chunk);
    // The last session of a slice may run up to five minutes past it; keep the whole trail in the span.
    const to = Math.min(SPAN.from + (index + 1) * slice, SPAN.to - TOKEN_SECONDS * 1000);
    worker.postMessage({ order: index, first: index * options.chunk + 1, count, from: SPAN.from + index * slice, to });
  };
  const writes = new Set<Promise<void>>();
  let previous = GENESIS_CHAIN_HASH;
  let done = 0;
  try {
    // Two chunks per thread in the making at most, so memory stays flat whatever the trail's size.
    for (const worker of workers) for (let i = 0; i < 2; i++) dispatch(worker);
    for (let index = 0; index < chunks; index++) {
      while (!generated.has(index)) await new Promise<void>((resolve) => (wake = resolve));
      const chunk = generated.get(index) as LoadedChunk;
      generated.delete(index);
      dispatch(workers[index % workers.length]);
      const chain = chunk.contentHashes.map((hash) => (previous = chainHash(previous, hash)));
      while (writes.size >= options.parallel) await Promise.race(writes);
      const write = writeChunk(db, chunk, chain).then(() => {
        writes.delete(write);
        done += chain.length;
        progress(done);
      });
      writes.add(write);
    }
    await Promise.all(writes);
    await db.execute(sql`SELECT setval(pg_get_serial_sequence('audit_events', 'seq'), (SELECT max(seq) FROM audit_events))`);
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

/** The txid the loaded events carry: below any real transaction's, so every later event seals after them. */
const LOADED_TXID = '3';

async function writeChunk(db: Database, chunk: LoadedChunk, chain: string[]): Promise<void> {
  const column = (values: string | string[]) => sql`${sql.param(values)}::text[]`;
  await db.transaction(async (tx) => {
    await tx.execute(sql`SET LOCAL synchronous_commit = off`);
    await tx.execute(sql`INSERT INTO audit_events (seq, txid, event_id, recorded, content) OVERRIDING SYSTEM VALUE
      SELECT seq::bigint, ${LOADED_TXID}::xid8, event_id, recorded::timestamptz, content
      FROM unnest(${column(chunk.events.seq)}, ${column(chunk.events.eventId)}, ${column(chunk.events.recorded)}, ${column(chunk.events.content)}) AS e(seq, event_id, recorded, content)`);
    await tx.execute(sql`INSERT INTO audit_chain (position, event_seq, event_txid, content_hash, chain_hash)
      SELECT position::bigint, position::bigint, ${LOADED_TXID}::xid8, content_hash, chain_hash
      FROM unnest(${column(chunk.events.seq)}, ${column(chunk.contentHashes)}, ${column(chain)}) AS c(position, content_hash, chain_hash)`);
    await insertIndexColumns(tx, chunk.index);
  });
}
