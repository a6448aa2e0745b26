import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTar, readTarball, TarballError } from '../../src/fhir/tarball.ts';

/** A ustar header as POSIX specifies it, with a correct checksum unless told otherwise. */
function header(name: string, size: number, options: { type?: string; prefix?: string; magic?: string; checksum?: number; sizeField?: string } = {}): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(options.sizeField ?? `${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write(options.type ?? '0', 156);
  h.write(options.magic ?? 'ustar\u000000', 257, 'latin1');
  h.write(options.prefix ?? '', 345);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${(options.checksum ?? sum).toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

function entry(name: string, data: string | Buffer, options: Parameters<typeof header>[2] = {}): Buffer {
  const bytes = Buffer.from(data);
  return Buffer.concat([header(name, bytes.length, options), bytes, Buffer.alloc((512 - (bytes.length % 512)) % 512)]);
}

const END = Buffer.alloc(1024);

function pax(records: Record<string, string>): string {
  return Object.entries(records)
    .map(([key, value]) => {
      const body = ` ${key}=${value}\n`;
      let length = body.length + 1;
      while (`${length}${body}`.length !== length) length++;
      return `${length}${body}`;
    })
    .join('');
}

const longName = `package/${'StructureDefinition-'.repeat(6)}long.json`;

describe('readTar', () => {
  it.each([
    ['plain ustar entries', [entry('package/a.json', '{"a":1}'), entry('package/b.json', 'bee')], [['package/a.json', '{"a":1}'], ['package/b.json', 'bee']]],
    ['a name split into ustar prefix and name', [entry('long.json', 'x', { prefix: 'package/deep/folder' })], [['package/deep/folder/long.json', 'x']]],
    ['a pax path overriding the header name', [entry('PaxHeader/x', pax({ path: longName }), { type: 'x' }), entry('truncated-name', 'data')], [[longName, 'data']]],
    ['a GNU long name', [entry('././@LongLink', `${longName}\0`, { type: 'L', magic: 'ustar  \0' }), entry('truncated', 'gnu', { magic: 'ustar  \0' })], [[longName, 'gnu']]],
    ['a pax global header, which names no file', [entry('pax_global_header', pax({ comment: 'git' }), { type: 'g' }), entry('package/a.json', 'a')], [['package/a.json', 'a']]],
    ['directories and links, which are not files', [entry('package/', '', { type: '5' }), entry('package/link', '', { type: '2' }), entry('package/a.json', 'a')], [['package/a.json', 'a']]],
    ['a file of exactly one block and an empty file', [entry('package/block', 'z'.repeat(512)), entry('package/empty', '')], [['package/block', 'z'.repeat(512)], ['package/empty', '']]],
  ])('reads %s', (_case, parts, expected) => {
    const entries = readTar(Buffer.concat([...parts, END]));
    expect(entries.map((e) => [e.path, e.data.toString('utf8')])).toEqual(expected);
  });

  it.each([
    ['a header with a wrong checksum', Buffer.concat([entry('package/a.json', 'a', { checksum: 1 }), END]), 'bad header checksum at byte 0'],
    ['an entry cut short', Buffer.concat([header('package/a.json', 2000), Buffer.alloc(512)]), 'truncated (entry at byte 0)'],
    ['an archive without its end marker', entry('package/a.json', 'a'), 'without the end-of-archive marker'],
    ['a size that is not octal', Buffer.concat([header('package/a.json', 1, { sizeField: '9999\0' }), END]), 'bad number in header at byte 0'],
    ['a damaged pax record', Buffer.concat([entry('PaxHeader/x', '99 path=x\n', { type: 'x' }), entry('a', 'a'), END]), 'damaged pax header'],
  ])('rejects %s with a TarballError saying what is wrong', (_case, data, message) => {
    expect(() => readTar(data)).toThrowError(TarballError);
    expect(() => readTar(data)).toThrowError(message);
  });
});

describe('readTarball', () => {
  const archive = Buffer.concat([entry('package/a.json', '{"a":1}'), END]);

  it('gunzips and reads the archive', () => {
    expect(readTarball(gzipSync(archive), 1 << 20).map((e) => e.path)).toEqual(['package/a.json']);
  });

  it.each([
    ['bytes that are not gzip', Buffer.from('PK\u0003\u0004 a zip file'), 'not gzip-compressed'],
    ['a gzip stream cut in half', gzipSync(Buffer.concat([entry('package/a.json', 'x'.repeat(5000)), END])).subarray(0, 60), 'gzip stream is damaged'],
    ['an archive that expands beyond the limit', gzipSync(Buffer.concat([entry('package/big', Buffer.alloc(64 * 1024)), END])), 'expands to more than 4096 bytes'],
  ])('rejects %s', (_case, data, message) => {
    expect(() => readTarball(data, 4096)).toThrowError(TarballError);
    expect(() => readTarball(data, 4096)).toThrowError(message);
  });
});

describe('archives written by GNU tar', () => {
  const deepName = `${'d'.repeat(90)}/${'f'.repeat(90)}.json`;
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'baton-tar-'));
    mkdirSync(join(dir, 'package', 'd'.repeat(90)), { recursive: true });
    writeFileSync(join(dir, 'package', 'short.json'), '{"short":true}');
    writeFileSync(join(dir, 'package', deepName), '{"long":true}');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['gnu', 'posix', 'ustar'])('reads long and short names in the %s format', (format) => {
    const file = join(dir, `${format}.tgz`);
    execFileSync('tar', [`--format=${format}`, '-czf', file, '-C', dir, 'package']);
    const files = readTarball(readFileSync(file), 1 << 20).map((e) => [e.path, e.data.toString('utf8')]);
    expect(files).toEqual(expect.arrayContaining([['package/short.json', '{"short":true}'], [`package/${deepName}`, '{"long":true}']]));
  });
});
