/**
 * npm run client:new -- --name <partner> [--kind partner|internal] [--scope "<scopes>"] [--org <system>|<value>]
 *                       [--base http://127.0.0.1:8080] [--admin-token <token>]
 *   generates a key pair, registers it with the running Baton, saves the private key and prints a token request.
 * npm run client:assertion -- --key <client_id>.private.jwk.json [--client-id <id>] [--scope "<scopes>"] [--base …]
 *   prints a fresh token request for a client registered earlier.
 * Exit code 1 on any failure, with a message saying what to do.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  INTERNAL_DEFAULT_SCOPE,
  OnboardingError,
  PARTNER_DEFAULT_SCOPE,
  curlInstructions,
  registerNewClient,
  tokenRequestFromKeyFile,
} from '../src/auth/client-onboarding.ts';

const DEFAULT_BASE = 'http://127.0.0.1:8080';

async function clientNew(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { name: { type: 'string' }, kind: { type: 'string', default: 'partner' }, scope: { type: 'string' }, org: { type: 'string' }, base: { type: 'string', default: DEFAULT_BASE }, 'admin-token': { type: 'string' } },
  });
  if (!values.name?.trim()) throw new OnboardingError('--name <partner> is required');
  const kind = values.kind;
  if (kind !== 'partner' && kind !== 'internal') throw new OnboardingError('--kind must be partner or internal');
  const client = await registerNewClient({
    base: values.base,
    adminToken: values['admin-token'] ?? process.env.BATON_ADMIN_TOKEN,
    name: values.name.trim(),
    kind,
    scope: values.scope ?? (kind === 'partner' ? PARTNER_DEFAULT_SCOPE : INTERNAL_DEFAULT_SCOPE),
    // Without --org the Organization is identified by a fresh URI; a partner's NAIC code is the usual choice.
    organization: values.org ? parseOrganization(values.org) : { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${randomUUID()}` },
    keyDir: join(process.env.BATON_DATA_DIR ?? './data', 'clients'),
  });
  console.log(
    [
      `Registered ${kind} client ${client.clientId} ("${values.name.trim()}") with scope: ${client.scope}`,
      `Private key: ${client.keyFile} (mode 0600; it is the client's credential, keep it secret)`,
      '',
      curlInstructions(client.tokenRequest, client.readUrl),
      '',
      `# Another assertion later: npm run client:assertion -- --key ${client.keyFile}${values.base === DEFAULT_BASE ? '' : ` --base ${values.base}`}`,
    ].join('\n'),
  );
}

async function clientAssertion(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { key: { type: 'string' }, 'client-id': { type: 'string' }, scope: { type: 'string', default: PARTNER_DEFAULT_SCOPE }, base: { type: 'string', default: DEFAULT_BASE } },
  });
  if (!values.key) throw new OnboardingError('--key <client_id>.private.jwk.json is required');
  // Scopes beyond the registration are dropped by the server (granted = requested ∩ registered).
  const { tokenRequest, readUrl } = await tokenRequestFromKeyFile({ base: values.base, keyFile: values.key, clientId: values['client-id'], scope: values.scope });
  console.log(curlInstructions(tokenRequest, readUrl));
}

function parseOrganization(text: string): { system: string; value: string } {
  const bar = text.indexOf('|');
  if (bar < 1 || bar === text.length - 1) throw new OnboardingError('--org must be <system>|<value>, e.g. http://www.naic.org|12345');
  return { system: text.slice(0, bar), value: text.slice(bar + 1) };
}

const [command, ...args] = process.argv.slice(2);
const commands: Record<string, (args: string[]) => Promise<void>> = { new: clientNew, assertion: clientAssertion };
const run = commands[command ?? ''] ?? (() => Promise.reject(new OnboardingError('the first argument must be new or assertion')));
await run(args).catch((error: unknown) => {
  // parseArgs' errors (unknown or valueless options) are usage errors too.
  const usage = (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  if (!(error instanceof OnboardingError) && !usage) throw error;
  console.error(`client:${command}: ${(error as Error).message}`);
  process.exit(1);
});
