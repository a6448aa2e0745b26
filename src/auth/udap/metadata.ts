import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { UdapConfig } from '../../config.ts';
import { authUrls } from '../smart-configuration.ts';
import { B2B_EXTENSION } from './b2b-extension.ts';
import { x5cEntry } from './certificate-chain.ts';
import { UDAP_SIGNING_ALGORITHMS } from './x5c-jwt.ts';

/** The IG allows a year; a day keeps the metadata of a replaced certificate from circulating long. */
const SIGNED_METADATA_LIFETIME_SECONDS = 24 * 3600;

/** The metadata is re-signed this often rather than per request: an RSA signature per anonymous GET is a cheap lever for load. */
const RESIGN_AFTER_MS = 3600 * 1000;

/** Where the UDAP endpoints live: beside the SMART ones, under the origin of the FHIR base URL. */
export function udapUrls(fhirBaseUrl: string): { tokenUrl: string; registrationUrl: string } {
  const { issuer, tokenUrl } = authUrls(fhirBaseUrl);
  return { tokenUrl, registrationUrl: `${issuer}/auth/udap/register` };
}

/**
 * `GET {base}/.well-known/udap` (UDAP IG §2.2): the document, with `signed_metadata` signed at
 * most RESIGN_AFTER_MS ago. Baton holds one certificate, so the `community` parameter (§2.4)
 * always gets this default metadata, which the IG allows.
 */
export function udapDiscovery(udap: UdapConfig, fhirBaseUrl: string): (now: Date) => Promise<Record<string, unknown>> {
  let signed: { jwt: string; at: number } | undefined;
  return async (now) => {
    if (!signed || now.getTime() - signed.at > RESIGN_AFTER_MS) signed = { jwt: await signMetadata(udap, fhirBaseUrl, now), at: now.getTime() };
    return metadataDocument(udap, fhirBaseUrl, signed.jwt);
  };
}

function metadataDocument(udap: UdapConfig, fhirBaseUrl: string, signedMetadata: string): Record<string, unknown> {
  const { tokenUrl, registrationUrl } = udapUrls(fhirBaseUrl);
  return {
    udap_versions_supported: ['1'],
    // §2.2: udap_authz is listed because client_credentials is supported (authorization extension objects).
    udap_profiles_supported: ['udap_dcr', 'udap_authn', 'udap_authz'],
    udap_authorization_extensions_supported: [B2B_EXTENSION],
    // §5.2.1: the B2B extension object is required of client_credentials clients, so every token request carries it.
    udap_authorization_extensions_required: [B2B_EXTENSION],
    udap_certifications_supported: [],
    udap_certifications_required: [],
    grant_types_supported: ['client_credentials'],
    scopes_supported: udap.scopes,
    token_endpoint: tokenUrl,
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: UDAP_SIGNING_ALGORITHMS,
    registration_endpoint: registrationUrl,
    registration_endpoint_jwt_signing_alg_values_supported: UDAP_SIGNING_ALGORITHMS,
    signed_metadata: signedMetadata,
  };
}

/** §2.3: a JWT signed with RS256 by the server certificate's key, x5c carrying its chain; iss = sub = the FHIR base URL. */
async function signMetadata(udap: UdapConfig, fhirBaseUrl: string, now: Date): Promise<string> {
  const { tokenUrl, registrationUrl } = udapUrls(fhirBaseUrl);
  const iat = Math.floor(now.getTime() / 1000);
  // Never past the certificate's own end: the signature means nothing after it.
  const exp = Math.min(iat + SIGNED_METADATA_LIFETIME_SECONDS, Math.floor(Date.parse(udap.certificates[0].validTo) / 1000));
  return new SignJWT({ token_endpoint: tokenUrl, registration_endpoint: registrationUrl })
    .setProtectedHeader({ alg: 'RS256', x5c: udap.certificates.map(x5cEntry) })
    .setIssuer(fhirBaseUrl)
    .setSubject(fhirBaseUrl)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(randomUUID())
    .sign(udap.privateKey);
}
