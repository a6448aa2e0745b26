import { constants, createHash } from 'node:crypto';
import { type ServerOptions, createServer } from 'node:https';
import { TLSSocket } from 'node:tls';
import type { TlsConfig } from '../config.ts';

/**
 * What @hono/node-server's serve() needs to listen over HTTPS. With a client CA the server asks
 * every connection for a certificate but lets the handshake finish without a valid one
 * (rejectUnauthorized: false): discovery (/fhir/metadata, /.well-known/*, /auth/jwks) stays
 * reachable for anyone, while the token endpoint and the FHIR API refuse a connection whose
 * certificate did not verify against TLS_CLIENT_CA (see verifiedCertificateThumbprint).
 */
export function httpsServing(tls: TlsConfig): { createServer: typeof createServer; serverOptions: ServerOptions } {
  const clientCertificates: ServerOptions = tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : {};
  return {
    createServer,
    serverOptions: {
      cert: tls.cert,
      key: tls.key,
      minVersion: 'TLSv1.2',
      // A TLS 1.2 renegotiation could swap the client certificate under a connection whose thumbprint is already known.
      secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
      ...clientCertificates,
    },
  };
}

/** RFC 8705 §3.1: x5t#S256 is the base64url SHA-256 of the certificate's DER encoding. */
export function certificateThumbprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('base64url');
}

/** Thumbprints per connection: a keep-alive connection carries many requests over one handshake. */
const thumbprints = new WeakMap<TLSSocket, string>();

/**
 * The x5t#S256 of the client certificate this request's connection presented and that verified
 * against TLS_CLIENT_CA; undefined for plain HTTP, no certificate, or one that did not verify,
 * so an unverified certificate can never bind or present a token. `bindings` is the server's
 * per-request environment (Hono's c.env; @hono/node-server puts the Node request there).
 */
export function verifiedCertificateThumbprint(bindings: unknown): string | undefined {
  const socket = (bindings as { incoming?: { socket?: unknown } } | undefined)?.incoming?.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  let thumbprint = thumbprints.get(socket);
  if (thumbprint === undefined) {
    const { raw } = socket.getPeerCertificate();
    if (!raw) return undefined;
    thumbprint = certificateThumbprint(raw);
    thumbprints.set(socket, thumbprint);
  }
  return thumbprint;
}
