import { X509Certificate } from 'node:crypto';
import { keyUsages } from './key-usage.ts';

/**
 * X.509 path validation for UDAP (IG §7.1.5): the signer's certificate must chain to an
 * anchor of the trust community, every certificate on the path within its validity period,
 * intermediates CAs, the leaf usable for signatures. Revocation (CRL/OCSP) is not checked.
 */

/** Why a chain is not trusted; the message names no certificate content and may go to the client. */
export class UntrustedChainError extends Error {}

/** An x5c longer than this is not a real chain. */
const MAX_CHAIN_LENGTH = 10;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** RFC 7515 §4.1.6 `x5c`: base64 (not base64url) DER certificates, the signer's first; throws on anything else. */
export function parseX5c(x5c: unknown): X509Certificate[] {
  if (!Array.isArray(x5c) || x5c.length === 0) throw new Error('the x5c header must be a non-empty array of certificates');
  if (x5c.length > MAX_CHAIN_LENGTH) throw new Error(`the x5c header holds more than ${MAX_CHAIN_LENGTH} certificates`);
  return x5c.map((entry, i) => {
    if (typeof entry !== 'string' || !BASE64.test(entry)) throw new Error(`x5c[${i}] is not a base64 DER certificate`);
    try {
      return new X509Certificate(Buffer.from(entry, 'base64'));
    } catch {
      throw new Error(`x5c[${i}] is not an X.509 certificate`);
    }
  });
}

/** The certificate's x5c entry. */
export function x5cEntry(certificate: X509Certificate): string {
  return certificate.raw.toString('base64');
}

/**
 * The uniformResourceIdentifier entries of the subjectAltName extension. Node renders the
 * extension as `URI:a, DNS:b`, quoting (JSON-style) any value with a comma or quote in it.
 */
export function uriSubjectAltNames(certificate: X509Certificate): string[] {
  const text = certificate.subjectAltName ?? '';
  const uris: string[] = [];
  for (const [, kind, value] of text.matchAll(/(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    if (kind === 'URI') uris.push(value.startsWith('"') ? (JSON.parse(value) as string) : value);
  }
  return uris;
}

/**
 * The anchor a chain (leaf first, as in x5c) leads to, checked at `now`; throws
 * UntrustedChainError when no valid path reaches one. Certificates after the leaf may come in
 * any order; each is used at most once.
 */
export function trustAnchorOf(chain: readonly X509Certificate[], anchors: readonly X509Certificate[], now: Date): X509Certificate {
  const [leaf, ...others] = chain;
  checkValidity(leaf, now, 'the signing certificate');
  let usages: ReturnType<typeof keyUsages>;
  try {
    usages = keyUsages(leaf);
  } catch {
    throw new UntrustedChainError('the signing certificate has an unreadable keyUsage extension');
  }
  // UDAP certificate profile: the key signs JWTs, so the certificate must say it may sign.
  if (!usages?.has('digitalSignature')) throw new UntrustedChainError('the signing certificate keyUsage does not include digitalSignature');

  const unused = [...others];
  for (let current = leaf; ; ) {
    const anchor = anchors.find((a) => a.fingerprint256 === current.fingerprint256 || issuedBy(current, a));
    if (anchor) {
      checkValidity(anchor, now, 'the trust anchor');
      return anchor;
    }
    const issuer = unused.find((candidate) => issuedBy(current, candidate));
    if (!issuer) throw new UntrustedChainError('the certificate chain does not lead to a trust anchor of this server');
    // RFC 5280 §4.2.1.9: only a CA certificate may issue others (keyCertSign is checked by checkIssued).
    if (!issuer.ca) throw new UntrustedChainError('an intermediate certificate is not a CA');
    checkValidity(issuer, now, 'an intermediate certificate');
    unused.splice(unused.indexOf(issuer), 1);
    current = issuer;
  }
}

/** Names match (and the issuer's keyUsage allows keyCertSign, OpenSSL X509_check_issued) and the signature verifies. */
function issuedBy(certificate: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function checkValidity(certificate: X509Certificate, now: Date, what: string): void {
  if (now.getTime() < Date.parse(certificate.validFrom)) throw new UntrustedChainError(`${what} is not yet valid`);
  if (now.getTime() > Date.parse(certificate.validTo)) throw new UntrustedChainError(`${what} has expired`);
}
