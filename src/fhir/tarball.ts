import { gunzipSync } from 'node:zlib';

/**
 * Reads the regular files of a gzipped tar archive (an NPM package, `.tgz`) into memory.
 * Understands the formats npm and the FHIR IG publisher write: POSIX ustar (with its name
 * prefix), pax extended headers (`path`, `size`) and GNU long names.
 */
export interface TarEntry {
  path: string;
  data: Buffer;
}

export class TarballError extends Error {}

const BLOCK = 512;

export function readTarball(gzipped: Buffer, maxBytes: number): TarEntry[] {
  if (gzipped.length < 2 || gzipped[0] !== 0x1f || gzipped[1] !== 0x8b) throw new TarballError('it is not gzip-compressed');
  let tar: Buffer;
  try {
    tar = gunzipSync(gzipped, { maxOutputLength: maxBytes });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new TarballError(`it expands to more than ${maxBytes} bytes`);
    throw new TarballError(`its gzip stream is damaged (${(error as Error).message})`);
  }
  return readTar(tar);
}

export function readTar(tar: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let extended: Record<string, string> = {};
  let offset = 0;
  while (offset + BLOCK <= tar.length) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every((byte) => byte === 0)) return entries;
    assertChecksum(header, offset);
    const size = extended.size !== undefined ? Number(extended.size) : octal(header.subarray(124, 136), offset);
    const start = offset + BLOCK;
    if (!Number.isSafeInteger(size) || start + size > tar.length) throw new TarballError(`it is truncated (entry at byte ${offset})`);
    const data = tar.subarray(start, start + size);
    offset = start + Math.ceil(size / BLOCK) * BLOCK;
    const type = String.fromCharCode(header[156]);
    if (type === 'x') {
      extended = paxRecords(data, start);
    } else if (type === 'L') {
      extended = { ...extended, path: text(data) };
    } else {
      if (type === '0' || type === '\0' || type === '7') entries.push({ path: extended.path ?? headerPath(header), data });
      extended = {};
    }
  }
  throw new TarballError('it ends without the end-of-archive marker (truncated)');
}

/** ustar §checksum: the header's bytes summed with the checksum field read as spaces. */
function assertChecksum(header: Buffer, offset: number): void {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
  if (octal(header.subarray(148, 156), offset) !== sum) throw new TarballError(`it is not a tar archive (bad header checksum at byte ${offset})`);
}

function octal(field: Buffer, offset: number): number {
  const digits = text(field).trim();
  if (!/^[0-7]+$/.test(digits)) throw new TarballError(`it is not a tar archive (bad number in header at byte ${offset})`);
  return parseInt(digits, 8);
}

function text(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

/** POSIX ustar splits long names into `prefix/name`; GNU tar uses that space for other fields. */
function headerPath(header: Buffer): string {
  const name = text(header.subarray(0, 100));
  const isPosix = header.subarray(257, 263).toString('latin1') === 'ustar\0';
  const prefix = isPosix ? text(header.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

/** pax records are `<length> <key>=<value>\n`, the length counting the whole record in bytes. */
function paxRecords(data: Buffer, start: number): Record<string, string> {
  const records: Record<string, string> = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = Number(data.subarray(at, space).toString('latin1'));
    if (space === -1 || !Number.isInteger(length) || length <= space - at || at + length > data.length) {
      throw new TarballError(`it has a damaged pax header at byte ${start}`);
    }
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals > 0) records[record.slice(0, equals)] = record.slice(equals + 1);
    at += length;
  }
  return records;
}
