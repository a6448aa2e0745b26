/**
 * SMART system scopes (App Launch 2.x §scopes-and-launch-context): v1 `system/Type.read|write|*`
 * and v2 `system/Type.cruds` (letters in that order, optionally `?param=value`). Other scopes
 * (operation URLs) are opaque and only ever match themselves.
 */

interface ResourceScope {
  type: string;
  /** The permission letters (c r u d s) the scope grants. */
  letters: Set<string>;
  query: string;
}

const V1_LETTERS: Record<string, string> = { read: 'rs', write: 'cud', '*': 'cruds' };
const V2 = /^c?r?u?d?s?$/;
const SCOPE = /^system\/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(\?.+)?$/;

export function parseResourceScope(scope: string): ResourceScope | undefined {
  const m = SCOPE.exec(scope);
  if (!m) return undefined;
  const [, type, permission, query = ''] = m;
  const letters = V1_LETTERS[permission] ?? (permission && V2.test(permission) ? permission : undefined);
  // v1 permissions take no query: constraints are a v2 feature.
  if (!letters || (query && permission in V1_LETTERS)) return undefined;
  return { type, letters: new Set(letters), query };
}

/** Whether a scope string is something Baton understands: a SMART system scope or an absolute URL (operation scopes). */
export function isKnownScope(scope: string): boolean {
  return parseResourceScope(scope) !== undefined || /^https?:\/\/\S+$/.test(scope);
}

/** Whether holding `held` permits everything `wanted` asks for. */
export function covers(held: string, wanted: string): boolean {
  if (held === wanted) return true;
  const h = parseResourceScope(held);
  const w = parseResourceScope(wanted);
  if (!h || !w) return false;
  if (h.type !== '*' && h.type !== w.type) return false;
  if (h.query && h.query !== w.query) return false;
  return [...w.letters].every((letter) => h.letters.has(letter));
}

export function splitScopes(text: string): string[] {
  return [...new Set(text.split(' ').filter(Boolean))];
}

/**
 * Granted = requested ∩ registered (SMART: the server may grant fewer scopes than requested).
 * A requested scope the registration covers is granted as asked; one broader than the
 * registration is narrowed to the registered scopes it covers.
 */
export function grantScopes(requested: string[], registered: string[]): string[] {
  const granted = new Set<string>();
  for (const wanted of requested) {
    if (registered.some((held) => covers(held, wanted))) granted.add(wanted);
    else for (const held of registered) if (covers(wanted, held)) granted.add(held);
  }
  return [...granted];
}
