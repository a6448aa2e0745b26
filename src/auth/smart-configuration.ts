import type { CapabilityStatementRestSecurity } from '@medplum/fhirtypes';
import { ASSERTION_ALGORITHMS } from './assertion-claims.ts';

/** Where the authorization server's endpoints live: under the origin of the FHIR base URL. */
export function authUrls(fhirBaseUrl: string): { tokenUrl: string; jwksUrl: string; authorizeUrl: string; issuer: string } {
  const issuer = new URL(fhirBaseUrl).origin;
  return { issuer, tokenUrl: `${issuer}/auth/token`, jwksUrl: `${issuer}/auth/jwks`, authorizeUrl: `${issuer}/auth/authorize` };
}

/**
 * SMART App Launch 2.x §conformance (`.well-known/smart-configuration`) for a Backend
 * Services server. authorization_endpoint and code_challenge_methods_supported are listed
 * because Inferno's discovery test requires them even of backend-only servers.
 */
export function smartConfiguration(fhirBaseUrl: string, options: { certificateBoundTokens?: boolean } = {}): Record<string, unknown> {
  const urls = authUrls(fhirBaseUrl);
  return {
    issuer: urls.issuer,
    jwks_uri: urls.jwksUrl,
    authorization_endpoint: urls.authorizeUrl,
    token_endpoint: urls.tokenUrl,
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
    grant_types_supported: ['client_credentials'],
    scopes_supported: ['system/*.read', 'system/*.rs', 'system/*.cruds', 'system/*.write', 'system/*.*'],
    response_types_supported: ['token'],
    code_challenge_methods_supported: ['S256'],
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
    // RFC 8705 §3.3: under mutual TLS every access token is bound to the client certificate.
    ...(options.certificateBoundTokens ? { tls_client_certificate_bound_access_tokens: true } : {}),
  };
}

/** CapabilityStatement.rest.security: SMART on FHIR, with the token endpoint in the oauth-uris extension (SMART App Launch §conformance). */
export function restSecurity(fhirBaseUrl: string): CapabilityStatementRestSecurity {
  return {
    cors: true,
    service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }], text: 'SMART Backend Services (OAuth 2.0 client_credentials, private_key_jwt)' }],
    extension: [{ url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris', extension: [{ url: 'token', valueUri: authUrls(fhirBaseUrl).tokenUrl }] }],
    description: `Every endpoint but /metadata and the discovery documents requires a bearer token from ${authUrls(fhirBaseUrl).tokenUrl}; see ${fhirBaseUrl}/.well-known/smart-configuration.`,
  };
}
