import type { X509Certificate } from 'node:crypto';

/**
 * The X.509 keyUsage extension (RFC 5280 §4.2.1.3), which node:crypto does not expose
 * (`X509Certificate.keyUsage` is the *extended* key usage). Read from the certificate's DER.
 */

/** RFC 5280 §4.2.1.3 KeyUsage bits, in bit order. */
const KEY_USAGE_BITS = ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement', 'keyCertSign', 'cRLSign', 'encipherOnly', 'decipherOnly'] as const;

export type KeyUsage = (typeof KEY_USAGE_BITS)[number];

/** id-ce-keyUsage (2.5.29.15), DER-encoded OID content. */
const KEY_USAGE_OID = Buffer.from([0x55, 0x1d, 0x0f]);

const OCTET_STRING = 0x04;
const BIT_STRING = 0x03;
const OBJECT_IDENTIFIER = 0x06;
/** tbsCertificate `[3] EXPLICIT Extensions`. */
const EXTENSIONS_TAG = 0xa3;

/** The usages the certificate's keyUsage extension grants; undefined when it has none (no restriction). */
export function keyUsages(certificate: X509Certificate): Set<KeyUsage> | undefined {
  const der = certificate.raw;
  const [tbs] = children(der, element(der, 0));
  const extensions = children(der, tbs).find((e) => e.tag === EXTENSIONS_TAG);
  if (!extensions) return undefined;
  for (const extension of children(der, children(der, extensions)[0])) {
    const parts = children(der, extension);
    const oid = parts[0];
    if (oid?.tag !== OBJECT_IDENTIFIER || !der.subarray(oid.start, oid.end).equals(KEY_USAGE_OID)) continue;
    const value = parts[parts.length - 1];
    if (value.tag !== OCTET_STRING) throw new Error('keyUsage extension value is not an OCTET STRING');
    const bits = element(der, value.start);
    if (bits.tag !== BIT_STRING || bits.end > value.end) throw new Error('keyUsage is not a BIT STRING');
    const usages = new Set<KeyUsage>();
    // First content byte counts the unused bits; the flags follow, most significant bit first.
    KEY_USAGE_BITS.forEach((name, i) => {
      const byte = bits.start + 1 + Math.floor(i / 8);
      if (byte < bits.end && (der[byte] & (0x80 >> i % 8)) !== 0) usages.add(name);
    });
    return usages;
  }
  return undefined;
}

interface Element {
  tag: number;
  /** Offset of the first content byte. */
  start: number;
  /** Offset just past the content. */
  end: number;
}

/** The DER element (tag, length, content) at offset; definite lengths only, as DER requires. */
function element(der: Buffer, offset: number): Element {
  if (offset + 2 > der.length) throw new Error('truncated DER');
  const tag = der[offset];
  let length = der[offset + 1];
  let start = offset + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4 || start + octets > der.length) throw new Error('unsupported DER length');
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + der[start + i];
    start += octets;
  }
  if (start + length > der.length) throw new Error('truncated DER');
  return { tag, start, end: start + length };
}

function children(der: Buffer, parent: Element): Element[] {
  // Bit 6 of the identifier octet marks a constructed element (X.690 §8.1.2.5).
  if ((parent.tag & 0x20) === 0) throw new Error('not a constructed DER element');
  const result: Element[] = [];
  for (let offset = parent.start; offset < parent.end; ) {
    const child = element(der, offset);
    if (child.end > parent.end) throw new Error('DER element overruns its parent');
    result.push(child);
    offset = child.end;
  }
  return result;
}
