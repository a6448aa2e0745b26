/** The key of the HL7 B2B Authorization Extension Object in an authentication token's `extensions`. */
export const B2B_EXTENSION = 'hl7-b2b';

/** RFC 3986 §3: a scheme, a colon, something after it. */
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/;

/**
 * UDAP IG §5.2.1.1: the B2B Authorization Extension Object a client_credentials client puts in
 * `extensions.hl7-b2b` of its authentication token. The first broken rule, or undefined.
 */
export function b2bExtensionProblem(extensions: unknown): string | undefined {
  const b2b = isObject(extensions) ? extensions[B2B_EXTENSION] : undefined;
  if (!isObject(b2b)) return `the authentication token must carry the ${B2B_EXTENSION} authorization extension object in extensions`;
  if (b2b.version !== '1') return `${B2B_EXTENSION}.version must be "1"`;
  if (typeof b2b.organization_id !== 'string' || !URI.test(b2b.organization_id)) return `${B2B_EXTENSION}.organization_id must be a URI`;
  if (!isStringArray(b2b.purpose_of_use)) return `${B2B_EXTENSION}.purpose_of_use must be a non-empty array of strings`;
  for (const key of ['subject_name', 'subject_id', 'subject_role', 'organization_name']) {
    if (b2b[key] !== undefined && typeof b2b[key] !== 'string') return `${B2B_EXTENSION}.${key} must be a string`;
  }
  if (b2b.consent_policy !== undefined && !isStringArray(b2b.consent_policy)) return `${B2B_EXTENSION}.consent_policy must be a non-empty array of URIs`;
  if (b2b.consent_reference !== undefined) {
    // §5.2.1.1: consent_reference is omitted when consent_policy is; each is an absolute URL.
    if (b2b.consent_policy === undefined) return `${B2B_EXTENSION}.consent_reference requires consent_policy`;
    if (!isStringArray(b2b.consent_reference) || !b2b.consent_reference.every((r) => /^https?:\/\/\S+$/.test(r))) {
      return `${B2B_EXTENSION}.consent_reference must be a non-empty array of absolute URLs`;
    }
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string' && v !== '');
}
