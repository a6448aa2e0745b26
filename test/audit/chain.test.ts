import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GENESIS_CHAIN_HASH, chainHash, contentHash } from '../../src/audit/chain.ts';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

describe('contentHash', () => {
  it.each([
    ['the empty object', '{}', '{}'],
    ['members sorted by UTF-16 code units (RFC 8785 §3.2.3)', '{"b":1,"a":2,"A":3,"é":4,"\\u20ac":5}', '{"A":3,"a":2,"b":1,"é":4,"€":5}'],
    ['nested objects and arrays, whitespace dropped', '{ "z": [ 3, {"y":true, "x":null} ], "a": "s" }', '{"a":"s","z":[3,{"x":null,"y":true}]}'],
    ['numbers in ECMAScript form (RFC 8785 §3.2.2.3)', '[1.0, 1e3, -0, 0.000001, 1e-7, 1E21, 333333333.33333329]', '[1,1000,0,0.000001,1e-7,1e+21,333333333.3333333]'],
    ['strings with only the required escapes', '["\\u0041\\/", "\\u001f", "\\"\\\\"]', '["A/","\\u001f","\\"\\\\"]'],
  ])('hashes the canonical JSON of %s', (_name, text, canonical) => {
    expect(contentHash(JSON.parse(text))).toBe(sha256(canonical));
  });

  it('is the same for every spelling of one AuditEvent', () => {
    const one = JSON.parse('{"resourceType":"AuditEvent","id":"a1","recorded":"2025-01-02T03:04:05.678Z","outcome":"0"}');
    const other = JSON.parse('{ "outcome": "0",\n "recorded": "2025-01-02T03:04:05.678Z", "id": "a\\u0031", "resourceType": "AuditEvent" }');
    expect(contentHash(other)).toBe(contentHash(one));
    expect(contentHash({ ...one, outcome: '4' })).not.toBe(contentHash(one));
  });

  it('hashes a lone surrogate as U+FFFD rather than refusing the event', () => {
    expect(contentHash(JSON.parse('{"query":"a\\ud800b","\\udc00":1}'))).toBe(sha256('{"query":"a\uFFFDb","\uFFFD":1}'));
    expect(contentHash({ query: 'a\ud83d\ude00' })).toBe(sha256('{"query":"a😀"}'));
  });
});

describe('chainHash', () => {
  it('starts from 64 zeros and hashes the previous chain hash followed by the content hash, as hex text', () => {
    expect(GENESIS_CHAIN_HASH).toBe('0'.repeat(64));
    const first = chainHash(GENESIS_CHAIN_HASH, sha256('{}'));
    expect(first).toBe(sha256(`${'0'.repeat(64)}${sha256('{}')}`));
    expect(chainHash(first, sha256('[]'))).toBe(sha256(`${first}${sha256('[]')}`));
  });

  it('depends on the order of the events', () => {
    const [a, b] = [contentHash({ n: 1 }), contentHash({ n: 2 })];
    expect(chainHash(chainHash(GENESIS_CHAIN_HASH, a), b)).not.toBe(chainHash(chainHash(GENESIS_CHAIN_HASH, b), a));
  });
});
