import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { AuditEvent } from '@medplum/fhirtypes';
import type { AuditTrustedKeys } from './audit-key.ts';
import { GENESIS_CHAIN_HASH, chainHash, contentHash } from './chain.ts';
import { verifyCheckpointJws } from './verify.ts';

/**
 * The files an archived segment of the audit trail (positions from..to) is kept in, and their
 * verification without the database. Three files side by side:
 * - `audit-<from>-<to>.ndjson`: one ArchiveLine per position, in chain order;
 * - `audit-<from>-<to>.checkpoint.jws`: the signed checkpoint at `to`, exactly as stored;
 * - `audit-<from>-<to>.manifest.json`: an ArchiveManifest (the chain hash before `from`, counts,
 *   the NDJSON file's SHA-256).
 * Their contents depend on the trail only, so writing a segment again yields the same files.
 */

export interface ArchiveLine {
  position: number;
  event_seq: number;
  content_hash: string;
  chain_hash: string;
  /** The AuditEvent as recorded: its RFC 8785 hash is content_hash. */
  event: AuditEvent;
}

export interface ArchiveManifest {
  from: number;
  to: number;
  /** Chain hash at from - 1 (64 zeros before position 1). */
  previous_chain_hash: string;
  /** Chain hash at to, which the checkpoint signs. */
  chain_hash: string;
  events: number;
  ndjson: { file: string; bytes: number; sha256: string };
  checkpoint: { file: string; position: number; time: string };
}

export interface ArchiveFiles {
  ndjson: string;
  checkpoint: string;
  manifest: string;
}

/** The paths of segment from..to's files in `dir`. */
export function archiveFiles(dir: string, from: number, to: number): ArchiveFiles {
  const stem = join(dir, `audit-${from}-${to}`);
  return { ndjson: `${stem}.ndjson`, checkpoint: `${stem}.checkpoint.jws`, manifest: `${stem}.manifest.json` };
}

const NDJSON_NAME = /^audit-([1-9][0-9]*)-([1-9][0-9]*)\.ndjson$/;

export class ArchiveNameError extends Error {}

/** The segment files beside an NDJSON file named as the archiver names it. */
export function archiveFilesOf(ndjson: string): ArchiveFiles & { from: number; to: number } {
  const match = NDJSON_NAME.exec(basename(ndjson));
  if (!match) throw new ArchiveNameError(`${basename(ndjson)} is not named audit-<from>-<to>.ndjson`);
  const [from, to] = [Number(match[1]), Number(match[2])];
  return { ...archiveFiles(dirname(ndjson), from, to), from, to };
}

/**
 * Writes a file so that it is either absent or complete under its name: into a temporary name,
 * flushed to disk, then renamed. The caller syncs the directory once its renames are done.
 */
export async function writeFileDurably(path: string, write: (file: FileHandle) => Promise<void>): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const file = await open(temporary, 'wx');
  try {
    await write(file);
    await file.sync();
  } catch (error) {
    await file.close();
    await rm(temporary, { force: true });
    throw error;
  }
  await file.close();
  await rename(temporary, path);
}

/** Makes the directory's entries (renames included) durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface ArchiveVerification {
  verified: boolean;
  file: string;
  from: number;
  to: number;
  /** Lines checked and found valid. */
  checkedEvents: number;
  /** The segment's checkpoint, when its signature verifies. */
  checkpoint?: { position: number; time: string };
  firstInvalidPosition?: number;
  reason?: string;
}

/**
 * Verifies a segment's files against each other and the audit key: the manifest's SHA-256 of the
 * NDJSON file, the checkpoint's signature by a trusted key and its position and chain hash, and
 * every line's content hash recomputed from its event and chained from the manifest's previous
 * chain hash up to the checkpoint's.
 */
export async function verifyArchive(ndjson: string, trusted: AuditTrustedKeys): Promise<ArchiveVerification> {
  const files = archiveFilesOf(ndjson);
  const result = { file: basename(ndjson), from: files.from, to: files.to };
  const fail = (position: number, checkedEvents: number, reason: string, checkpoint?: ArchiveVerification['checkpoint']): ArchiveVerification => ({
    verified: false,
    ...result,
    checkedEvents,
    ...(checkpoint ? { checkpoint } : {}),
    firstInvalidPosition: position,
    reason,
  });

  const manifest = await readManifest(files.manifest);
  if (typeof manifest === 'string') return fail(files.from, 0, manifest);
  if (manifest.from !== files.from || manifest.to !== files.to || manifest.events !== files.to - files.from + 1) {
    return fail(files.from, 0, 'the manifest describes another segment than the file name');
  }
  if (files.from === 1 && manifest.previous_chain_hash !== GENESIS_CHAIN_HASH) return fail(1, 0, 'the chain hash before position 1 must be 64 zeros');
  if ((await sha256OfFile(ndjson)) !== manifest.ndjson.sha256) return fail(files.from, 0, 'the NDJSON file differs from the SHA-256 its manifest records');

  const jws = await readFile(files.checkpoint, 'utf8').catch(() => undefined);
  const at = `the checkpoint at position ${files.to}`;
  const payload = jws === undefined ? `${at} (${basename(files.checkpoint)}) is missing` : await verifyCheckpointJws(jws.trim(), trusted, at);
  if (typeof payload === 'string') return fail(files.to, 0, payload);
  if (payload.position !== files.to || payload.chain_hash !== manifest.chain_hash) return fail(files.to, 0, `${at} signs another position or chain hash than the manifest records`);
  const checkpoint = { position: payload.position, time: payload.time };

  let previous = manifest.previous_chain_hash;
  let position = files.from - 1;
  for await (const text of createInterface({ input: createReadStream(ndjson, 'utf8'), crlfDelay: Infinity })) {
    const expected = position + 1;
    const checked = expected - files.from;
    if (expected > files.to) return fail(expected, checked, `the file holds lines after position ${files.to}`, checkpoint);
    const line = parseLine(text);
    if (!line || line.position !== expected) return fail(expected, checked, `line ${checked + 1} is not position ${expected}`, checkpoint);
    if (contentHash(line.event) !== line.content_hash) return fail(expected, checked, `the event at position ${expected} differs from its content hash`, checkpoint);
    if (chainHash(previous, line.content_hash) !== line.chain_hash) return fail(expected, checked, `the chain hash at position ${expected} does not follow from position ${expected - 1}`, checkpoint);
    previous = line.chain_hash;
    position = expected;
  }
  if (position !== files.to) return fail(position + 1, position - files.from + 1, `the file ends before position ${files.to}`, checkpoint);
  if (previous !== payload.chain_hash) return fail(files.to, files.to - files.from, `the chain hash at position ${files.to} differs from the one its checkpoint signed`, checkpoint);
  return { verified: true, ...result, checkedEvents: files.to - files.from + 1, checkpoint };
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const HEX_HASH = /^[0-9a-f]{64}$/;

async function readManifest(path: string): Promise<ArchiveManifest | string> {
  let manifest: ArchiveManifest;
  try {
    manifest = JSON.parse(await readFile(path, 'utf8')) as ArchiveManifest;
  } catch {
    return `the manifest ${basename(path)} is missing or not JSON`;
  }
  const wellFormed =
    Number.isSafeInteger(manifest?.from) &&
    Number.isSafeInteger(manifest.to) &&
    Number.isSafeInteger(manifest.events) &&
    HEX_HASH.test(String(manifest.previous_chain_hash)) &&
    HEX_HASH.test(String(manifest.chain_hash)) &&
    HEX_HASH.test(String(manifest.ndjson?.sha256));
  return wellFormed ? manifest : `the manifest ${basename(path)} lacks from, to, events or its hashes`;
}

function parseLine(text: string): ArchiveLine | undefined {
  try {
    const line = JSON.parse(text) as ArchiveLine;
    const wellFormed = typeof line?.content_hash === 'string' && typeof line.chain_hash === 'string' && typeof line.event === 'object' && line.event !== null;
    return wellFormed ? line : undefined;
  } catch {
    return undefined;
  }
}
