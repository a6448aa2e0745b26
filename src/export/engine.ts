import type { Bundle, ExplanationOfBenefit, Group, Resource } from '@medplum/fhirtypes';
import { sql } from 'drizzle-orm';
import type { ExportConfig } from '../config.ts';
import type { Database } from '../db/connection.ts';
import { isVisible } from '../fhir/access.ts';
import { badRequest, FhirError, notFound, outcome } from '../fhir/errors.ts';
import { outcomeResponse } from '../fhir/http/respond.ts';
import type { FhirContext } from '../fhir/interactions.ts';
import { applyRepresentation } from '../fhir/representation.ts';
import { readCurrent } from '../fhir/store.ts';
import type { Logger } from '../logger.ts';
import { exportCaller } from './caller.ts';
import { cancelJob, type ExportFile, type ExportJob, insertJob, jobFile, jobFiles, pollJob, readJob } from './jobs.ts';
import { deletionPages, jobScope, liveFilePages } from './job-scope.ts';
import { localPatientId } from './plan.ts';
import { withoutFinancials } from './non-financial.ts';
import type { ExportParameters, ExportRequest } from './request.ts';
import type { SnapshotBytes, SnapshotRow } from './snapshot.ts';
import { ExportWorker, type MatchMembers } from './worker.ts';

/**
 * The Bulk Data export engine (Bulk Data Access 2.0.0): durable jobs in PostgreSQL, planned by
 * workers in any Baton process, answered by the async status URL, and delivered as NDJSON files
 * streamed from a snapshot of the database as of the job's transactionTime. Operations build on
 * it:
 *
 * - startExport(ctx, request): checks the request against the caller's access (403/404/400),
 *   the client's quota (429), records the job and starts planning it; answers the job id and
 *   the absolute status URL for the 202's Content-Location.
 * - status(ctx, id), cancel(ctx, id), file(ctx, id, n): the status URL (GET, DELETE) and the
 *   file URLs of the manifest, as Responses.
 *
 * $export (src/operations/export.ts) turns the kick-off parameters into an ExportRequest; an
 * operation delivering other data through the same machinery ($davinci-data-export with
 * `_until`, …) builds its own request, with its own `requestUrl`.
 */
export interface ExportEngineDeps {
  db: Database;
  /** The public FHIR base URL: status and file URLs are absolute under it. */
  baseUrl: string;
  config: ExportConfig;
  logger?: Logger;
  /** For $bulk-member-match jobs (worker.ts). */
  matchMembers?: MatchMembers;
}

export interface ExportStarted {
  id: string;
  /** Absolute status URL (Content-Location of the kick-off's 202). */
  statusUrl: string;
  transactionTime: string;
}

/** A 202 or 429 carries this; the files answer with this media type (Bulk Data: "SHALL be application/fhir+ndjson"). */
export const NDJSON = 'application/fhir+ndjson';

export const STATUS_PATH = '$export-status';
const FILE_PATH = '$export-file';
/** How long after the quota's 429 a client may try again, in seconds. */
const QUOTA_RETRY_AFTER = 30;
/** Polls closer than the Retry-After given by up to this much still count as on time (network and clock jitter). */
const POLL_TOLERANCE_MS = 250;

export class ExportEngine {
  readonly worker: ExportWorker;

  constructor(private readonly deps: ExportEngineDeps) {
    this.worker = new ExportWorker(deps);
  }

  async startExport(ctx: FhirContext, request: ExportRequest): Promise<ExportStarted> {
    const caller = exportCaller(ctx.access);
    for (const type of new Set([...(request.types ?? []), ...(request.typeFilters ?? []).map((f) => f.type)])) ctx.access.authorize('s', type);
    if (request.kind === 'group') await this.checkGroup(ctx, request);
    else if (request.patients) await this.checkPatients(ctx, request.patients);
    const job = await insertJob(this.deps.db, caller, request, this.deps.config.maxJobsPerClient, QUOTA_RETRY_AFTER);
    if (this.deps.config.worker) this.worker.kick();
    return { id: job.id, statusUrl: this.statusUrl(job.id), transactionTime: job.transactionTime };
  }

  statusUrl(id: string): string {
    return `${this.deps.baseUrl}/${STATUS_PATH}/${id}`;
  }

  /** GET on the status URL: 202 while planned, 429 when polled too soon, the manifest, or the failure. */
  async status(ctx: FhirContext, id: string): Promise<Response> {
    const caller = exportCaller(ctx.access);
    const { pollSeconds } = this.deps.config;
    const polled = await pollJob(this.deps.db, id, caller.clientId, pollSeconds * 1000 - POLL_TOLERANCE_MS);
    const job = polled?.job;
    // Bulk Data: after a DELETE, every request to the status URL is 404 with an OperationOutcome.
    if (!job || job.status === 'cancelled') throw unknownJob(id);
    assertNotExpired(job);
    if (polled.waitMs !== undefined) {
      throw new FhirError(429, outcome('error', 'throttled', `Status requested too often: at most one request every ${pollSeconds} s`), {
        'Retry-After': String(Math.max(1, Math.ceil(polled.waitMs / 1000))),
      });
    }
    if (job.status === 'failed') {
      const error = job.error ?? { status: 500, outcome: outcome('error', 'exception', 'The export failed') };
      return outcomeResponse(error.status, error.outcome);
    }
    if (job.status !== 'completed') {
      return new Response(null, { status: 202, headers: { 'X-Progress': progress(job), 'Retry-After': String(pollSeconds) } });
    }
    const manifest = this.manifest(job, await jobFiles(this.deps.db, job.id));
    return new Response(JSON.stringify(manifest), {
      status: 200,
      headers: { 'Content-Type': 'application/json', Expires: new Date(job.expiresMs as number).toUTCString() },
    });
  }

  /** DELETE on the status URL: the job is cancelled whatever its state (a finished one's files with it); then 404 for good. */
  async cancel(ctx: FhirContext, id: string): Promise<Response> {
    const caller = exportCaller(ctx.access);
    if (!(await cancelJob(this.deps.db, id, caller.clientId))) throw unknownJob(id);
    return outcomeResponse(202, outcome('information', 'informational', `Export ${id} cancelled`));
  }

  /**
   * A file of a completed export, to the client that started it (401 to any other), streamed
   * page by page from the snapshot: as it is read, not held.
   */
  async file(ctx: FhirContext, id: string, fileNo: string): Promise<Response> {
    const caller = exportCaller(ctx.access);
    const job = await readJob(this.deps.db, id);
    if (!job || job.status === 'cancelled') throw unknownJob(id);
    if (job.caller.clientId !== caller.clientId) throw notTheCaller();
    if (job.status !== 'completed') throw notFound(`Export ${id} has no files (it is ${job.status})`);
    assertNotExpired(job);
    const file = /^[1-9][0-9]{0,8}$/.test(fileNo) ? await jobFile(this.deps.db, id, Number(fileNo)) : undefined;
    if (!file) throw notFound(`Export ${id} has no file ${fileNo.slice(0, 12)}`);
    // Bulk Data: the files are protected as the kick-off was: the token must still cover the type.
    if (file.kind === 'output') ctx.access.authorize('s', file.resourceType);
    return new Response(this.stream(job, file), { status: 200, headers: { 'Content-Type': NDJSON } });
  }

  private manifest(job: ExportJob, files: ExportFile[]): object {
    const items = (kind: ExportFile['kind'], type?: string) =>
      files.filter((f) => f.kind === kind).map((f) => ({ type: type ?? f.resourceType, url: `${this.deps.baseUrl}/${FILE_PATH}/${job.id}/${f.fileNo}`, count: f.count }));
    return {
      transactionTime: job.transactionTime,
      request: job.requestUrl,
      requiresAccessToken: true,
      output: items('output'),
      ...(job.parameters.since ? { deleted: items('deleted', 'Bundle') } : {}),
      error: items('error'),
    };
  }

  private stream(job: ExportJob, file: ExportFile): ReadableStream<Uint8Array> {
    const encoder = new TextEncoder();
    if (file.kind === 'error') {
      return new ReadableStream({
        start(controller) {
          controller.enqueue(encoder.encode(job.messages.map((m) => `${JSON.stringify(m)}\n`).join('')));
          controller.close();
        },
      });
    }
    const scope = jobScope(job, this.deps.baseUrl);
    const range = { after: file.afterId, upTo: file.lastId };
    const pages: AsyncGenerator<Uint8Array | undefined> =
      file.kind === 'output'
        ? mapPages(liveFilePages(this.deps.db, job, scope, file.resourceType, range, this.deps.config.pageRows), resourceLines(file.resourceType, job.parameters))
        : mapPages(deletionPages(this.deps.db, job, scope, file.resourceType, range, this.deps.baseUrl, this.deps.config.pageRows), deletionLines(file.resourceType));
    return new ReadableStream({
      // A page can keep nothing (deletions another member's): pull until a line or the end.
      async pull(controller) {
        for (;;) {
          const { value, done } = await pages.next();
          if (done) return controller.close();
          if (value) return controller.enqueue(value);
        }
      },
      async cancel() {
        await pages.return(undefined);
      },
      // Two pages queued: the next page is read while the last one is written to the socket
      // (with one, each page's query waited for the socket to take the page before it).
    }, { highWaterMark: 2 });
  }

  /** The Group must exist and be visible to the caller; the `patient` parameter may only name its members. */
  private async checkGroup(ctx: FhirContext, request: ExportRequest): Promise<void> {
    const id = request.groupId as string;
    ctx.access.authorize('r', 'Group');
    const stored = await readCurrent(ctx.q, 'Group', id);
    if (!stored || stored.deleted || !(await isVisible(ctx.q, ctx.access, 'Group', id))) throw notFound(`Group/${id} is not known`);
    if (!request.patients) return;
    const group = JSON.parse(stored.json) as Group;
    const members = new Set((group.member ?? []).filter((m) => !m.inactive).map((m) => localPatientId(m.entity?.reference, this.deps.baseUrl)));
    const outside = request.patients.filter((patient) => !members.has(patient));
    if (outside.length > 0) throw badRequest(`patient names ${outside.length} patient(s) who are not members of Group/${id}`, ['patient']);
  }

  /** Bulk Data: a `patient` the server does not hold (or the caller may not see) is an error, not an empty export. */
  private async checkPatients(ctx: FhirContext, patients: string[]): Promise<void> {
    ctx.access.authorize('r', 'Patient');
    const r = sql.raw('r');
    const visible = ctx.access.visibility('Patient', r, 'r');
    const rows = await ctx.q.execute<{ id: string }>(
      sql`SELECT ${r}.id FROM resources ${r} WHERE ${r}.resource_type = 'Patient' AND ${r}.id IN ${patients} AND NOT ${r}.deleted${visible ? sql` AND ${visible}` : sql``}`,
    );
    const known = new Set(rows.map((row) => row.id));
    const unknown = patients.filter((patient) => !known.has(patient));
    if (unknown.length > 0) throw new FhirError(400, outcome('error', 'not-found', `patient names ${unknown.length} patient(s) this server does not know`, ['patient']));
  }
}

/** X-Progress (Bulk Data: under 100 characters). */
function progress(job: ExportJob): string {
  if (job.status === 'queued') return job.attempts > 0 ? `queued, retry ${job.attempts + 1}` : 'queued';
  if (job.parameters.membersToMatch) return 'matching members';
  if (job.types === null) return 'resolving members';
  return `planned ${job.planned} of ${job.types.length} resource types`;
}

function assertNotExpired(job: ExportJob): void {
  if (job.expiresMs !== null && job.expiresMs <= job.nowMs) throw new FhirError(410, outcome('error', 'deleted', `Export ${job.id} has expired; its files are no longer served`));
}

function unknownJob(id: string): FhirError {
  return notFound(`No export ${id.slice(0, 64)}: unknown, or cancelled`);
}

/** The files are the starting client's: another client's token is not the credential for them. */
function notTheCaller(): FhirError {
  return new FhirError(401, outcome('error', 'login', 'This export was started by another client; its files are served to that client only'), {
    'WWW-Authenticate': 'Bearer realm="baton", error="invalid_token", error_description="the export belongs to another client"',
  });
}

/** Each page of rows as the bytes of its NDJSON lines; undefined for a page without rows. */
async function* mapPages<Row>(pages: AsyncGenerator<Row[]>, lines: (rows: Row[]) => Uint8Array): AsyncGenerator<Uint8Array | undefined> {
  // Returning early (a cancelled download) closes `pages` too: for await does.
  for await (const rows of pages) yield rows.length > 0 ? lines(rows) : undefined;
}

const NEWLINE = Buffer.from('\n');

/**
 * One NDJSON line per resource: the stored JSON's bytes as they are, or, for claims of a
 * payer-to-payer export, without their financial elements and, with `_elements`, reduced to
 * those asked for its type.
 */
function resourceLines(resourceType: string, parameters: ExportParameters): (rows: SnapshotBytes[]) => Uint8Array {
  const kept = elementsFor(resourceType, parameters.elements);
  const claims = parameters.nonFinancialClaims === true && resourceType === 'ExplanationOfBenefit';
  if (!kept && !claims) return (rows) => Buffer.concat(rows.flatMap((row) => [row.content, NEWLINE]));
  const served = (resource: Resource): Resource => {
    const reduced = claims ? withoutFinancials(resource as ExplanationOfBenefit) : resource;
    return kept ? applyRepresentation(reduced, { elements: kept }) : reduced;
  };
  return (rows) => Buffer.from(rows.map((row) => `${JSON.stringify(served(JSON.parse(row.content.toString()) as Resource))}\n`).join(''));
}

/** Bulk Data `_elements`: `Type.element` for that type, `element` for every type; a type none applies to is served whole. */
function elementsFor(resourceType: string, elements: string[] | undefined): string[] | undefined {
  if (!elements) return undefined;
  const kept = elements.flatMap((element) => {
    const dot = element.indexOf('.');
    if (dot < 0) return [element];
    return element.slice(0, dot) === resourceType ? [element.slice(dot + 1)] : [];
  });
  return kept.length > 0 ? kept : undefined;
}

/** Bulk Data `deleted`: each line a transaction Bundle with one DELETE entry. */
function deletionLines(resourceType: string): (rows: SnapshotRow[]) => Uint8Array {
  return (rows) =>
    Buffer.from(
      rows
        .map((row) => {
          const bundle: Bundle = {
            resourceType: 'Bundle',
            meta: { lastUpdated: new Date(row.lastUpdatedMs).toISOString() },
            type: 'transaction',
            entry: [{ request: { method: 'DELETE', url: `${resourceType}/${row.id}` } }],
          };
          return `${JSON.stringify(bundle)}\n`;
        })
        .join(''),
    );
}
