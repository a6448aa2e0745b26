/** UDAP Dynamic Client Registration §5.2 / RFC 7591 §3.2.2 error codes. */
export type RegistrationErrorCode = 'invalid_software_statement' | 'unapproved_software_statement' | 'invalid_client_metadata';

/** A refused registration; rendered as `{error, error_description}` with status 400. */
export class UdapRegistrationError extends Error {
  constructor(
    readonly code: RegistrationErrorCode,
    readonly description: string,
  ) {
    super(description);
  }
}
