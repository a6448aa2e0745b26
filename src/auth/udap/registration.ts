import type { X509Certificate } from 'node:crypto';
import { type JWK, exportJWK } from 'jose';
import type { Database } from '../../db/connection.ts';
import type { ClientRegistration } from '../client-registration.ts';
import { createClient, deleteClient, recordAssertionJti, upsertClient } from '../clients.ts';
import { uriSubjectAltNames, x5cEntry } from './certificate-chain.ts';
import { UdapRegistrationError } from './registration-error.ts';
import { lockUdapRegistration, saveUdapRegistration } from './registrations.ts';
import { requestedRegistration, statementClaimProblem } from './software-statement.ts';
import { type VerifiedX5cJwt, X5cJwtError, verifyX5cJwt } from './x5c-jwt.ts';

export interface RegistrationContext {
  db: Database;
  /** This endpoint's URL: the software statement's audience. */
  registrationUrl: string;
  trustAnchors: readonly X509Certificate[];
  /** What a UDAP client may hold; requested scopes are narrowed to these. */
  allowedScopes: readonly string[];
  now: Date;
}

export interface RegistrationResponse {
  /** 201 for a new client; 200 when an existing registration was replaced or cancelled (UDAP IG §3.4). */
  status: 200 | 201;
  body: Record<string, unknown>;
}

/** The identifier system of a client URI (a subjectAltName URI is an RFC 3986 URI). */
const URI_SYSTEM = 'urn:ietf:rfc:3986';

/**
 * UDAP Dynamic Client Registration (UDAP IG §3): validates the signed software statement (its
 * x5c chain up to a trust anchor, the signature, the claims), then registers, updates or
 * cancels the client. Within a trust community the certificate's subjectAltName URI is the
 * application's identity, so registering again keeps the client_id.
 */
export async function registerUdapClient(ctx: RegistrationContext, body: unknown): Promise<RegistrationResponse> {
  const statement = softwareStatementOf(body);
  let verified: VerifiedX5cJwt;
  try {
    verified = await verifyX5cJwt(statement, ctx.trustAnchors, ctx.now);
  } catch (error) {
    if (!(error instanceof X5cJwtError)) throw error;
    // RFC 7591 §3.2.2: a certificate this server does not trust leaves the statement unapproved; anything else wrong makes it invalid.
    throw new UdapRegistrationError(error.reason === 'untrusted' ? 'unapproved_software_statement' : 'invalid_software_statement', error.message);
  }
  const { payload, leaf, anchor } = verified;
  const claimProblem = statementClaimProblem(payload, { registrationUrl: ctx.registrationUrl, now: Math.floor(ctx.now.getTime() / 1000) });
  if (claimProblem) throw new UdapRegistrationError('invalid_software_statement', claimProblem);
  const san = payload.iss as string;
  // UDAP IG §3.1: iss is a uniformResourceIdentifier of the certificate's subjectAltName.
  if (!uriSubjectAltNames(leaf).includes(san)) {
    throw new UdapRegistrationError('invalid_software_statement', 'iss must be a subjectAltName URI of the x5c certificate');
  }
  const requested = requestedRegistration(payload, ctx.allowedScopes);
  if ('problem' in requested) throw new UdapRegistrationError('invalid_client_metadata', requested.problem);
  const community = anchor.fingerprint256;
  const jwk = await certificateJwk(leaf);

  return ctx.db.transaction(async (tx) => {
    // UDAP IG §7.1.4: a jti is not reused by the same issuer until the statement expires. The
    // replay store is keyed by issuer; a client URI never collides with a client_id (a UUID).
    if (!(await recordAssertionJti(tx, `udap-software-statement ${san}`, payload.jti as string, payload.exp as number))) {
      throw new UdapRegistrationError('invalid_software_statement', 'jti has been used before');
    }
    const existing = await lockUdapRegistration(tx, san, community);
    if (requested.cancel) {
      if (!existing) throw new UdapRegistrationError('invalid_client_metadata', 'an empty grant_types cancels a registration, and this client has none in this trust community');
      await deleteClient(tx, existing.clientId);
      // §3.4: the empty grant_types in the response confirms the cancellation.
      return { status: 200, body: { client_id: existing.clientId, software_statement: statement, grant_types: [] } };
    }
    const registration: ClientRegistration = {
      name: requested.clientName,
      kind: 'partner',
      organizationIdentifiers: [{ system: URI_SYSTEM, value: san }],
      jwks: { keys: [jwk] },
      jwksUri: undefined,
      scopes: requested.scopes,
    };
    let clientId: string;
    if (existing) {
      clientId = existing.clientId;
      await upsertClient(tx, clientId, registration);
    } else {
      clientId = (await createClient(tx, registration)).client_id;
    }
    await saveUdapRegistration(tx, { clientId, san, community }, statement);
    return { status: existing ? 200 : 201, body: registrationBody(clientId, statement, registration, requested) };
  });
}

function softwareStatementOf(body: unknown): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new UdapRegistrationError('invalid_client_metadata', 'the body must be a JSON object');
  const request = body as Record<string, unknown>;
  if (request.udap !== '1') throw new UdapRegistrationError('invalid_client_metadata', 'udap must be "1"');
  // UDAP IG §3.3: certifications are optional and this server requires none; unrecognized ones are ignored.
  if (request.certifications !== undefined && !(Array.isArray(request.certifications) && request.certifications.every((c) => typeof c === 'string'))) {
    throw new UdapRegistrationError('invalid_client_metadata', 'certifications must be an array of JWTs');
  }
  if (typeof request.software_statement !== 'string' || !request.software_statement) throw new UdapRegistrationError('invalid_software_statement', 'software_statement is required');
  return request.software_statement;
}

/** The certificate's public key as a JWK, so the registry shows the key (and its certificate) the client signs with. */
async function certificateJwk(leaf: X509Certificate): Promise<JWK> {
  return { ...(await exportJWK(leaf.publicKey)), kid: Buffer.from(leaf.fingerprint256.replaceAll(':', ''), 'hex').toString('base64url'), x5c: [x5cEntry(leaf)] };
}

/**
 * UDAP DCR §5.1 / RFC 7591 §3.2.1: client_id, the statement as submitted and the registration
 * parameters as the server set them (scope narrowed to what was granted); JWT claims are left out.
 */
function registrationBody(
  clientId: string,
  statement: string,
  registration: ClientRegistration,
  requested: { contacts: string[]; logoUri: string | undefined },
): Record<string, unknown> {
  return {
    client_id: clientId,
    software_statement: statement,
    client_name: registration.name,
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'private_key_jwt',
    scope: registration.scopes.join(' '),
    contacts: requested.contacts,
    ...(requested.logoUri ? { logo_uri: requested.logoUri } : {}),
  };
}
