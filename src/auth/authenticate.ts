import { FhirError, outcome } from '../fhir/errors.ts';
import { isAdminToken } from './admin-credential.ts';
import { type Principal, ScopedAccess } from './access-policy.ts';
import { type AccessTokenVerifier, InvalidTokenError } from './access-token.ts';

export interface AuthenticateDeps {
  verifier: AccessTokenVerifier;
  baseUrl: string;
  /** BATON_ADMIN_TOKEN: operators present it as a bearer token and act with adminScopes. */
  adminToken: string | undefined;
  adminScopes: readonly string[];
  /** Mutual TLS is on (TLS_CLIENT_CA): every call needs a verified client certificate, every token must be bound to it. */
  requireClientCertificate?: boolean;
}

/**
 * Resolves the Authorization header of a FHIR request to the caller's access policy, or throws
 * the 401. certificateThumbprint is the x5t#S256 of the verified client certificate of the
 * connection, if any.
 */
export type Authenticate = (authorization: string | undefined, certificateThumbprint?: string) => Promise<ScopedAccess>;

export function bearerAuthenticator(deps: AuthenticateDeps): Authenticate {
  const operator = deps.adminToken ? new ScopedAccess({ clientId: 'operator', kind: 'operator', scopes: deps.adminScopes }, deps.baseUrl) : undefined;
  return async (authorization, certificateThumbprint) => {
    if (deps.requireClientCertificate && certificateThumbprint === undefined) {
      throw unauthorized('this server requires mutual TLS: connect with a client certificate issued by a CA it trusts');
    }
    const token = /^Bearer +([^\s]+) *$/i.exec(authorization ?? '')?.[1];
    if (!token) throw unauthorized('this endpoint requires an access token: Authorization: Bearer <token> (SMART Backend Services, token endpoint in /.well-known/smart-configuration)');
    if (operator && deps.adminToken && isAdminToken(token, deps.adminToken)) return operator;
    let principal: Principal;
    try {
      principal = await deps.verifier.verify(token);
    } catch (error) {
      if (error instanceof InvalidTokenError) throw unauthorized(error.message);
      throw error;
    }
    // RFC 8705 §3: a bound token only over its certificate. Under mutual TLS every token Baton
    // issues is bound, so an unbound one was issued elsewhere or before, and is refused too.
    if (principal.certificateThumbprint !== certificateThumbprint) {
      throw unauthorized(principal.certificateThumbprint ? 'the access token is bound to another certificate' : 'the access token is not bound to a client certificate');
    }
    return new ScopedAccess(principal, deps.baseUrl);
  };
}

/** RFC 6750 §3: 401 with a WWW-Authenticate challenge naming the problem; the OperationOutcome says the same. */
function unauthorized(description: string): FhirError {
  const quoted = description.replace(/["\\]/g, '');
  return new FhirError(401, outcome('error', 'login', description), {
    'WWW-Authenticate': `Bearer realm="baton", error="invalid_token", error_description="${quoted}"`,
  });
}
