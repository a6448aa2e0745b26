/**
 * References between the entries of a transaction (http.html#trules): Reference.reference
 * values and narrative links, found and rewritten in place. Pure.
 */

/** `urn:uuid:` and `urn:oid:` fullUrls name resources the transaction creates. */
export function isUrn(url: string): boolean {
  return url.startsWith('urn:uuid:') || url.startsWith('urn:oid:');
}

/** A conditional reference is a search, `Patient?identifier=sys|val` (http.html#trules). */
export function isConditionalReference(reference: string): boolean {
  return /^[A-Z][A-Za-z]*\?/.test(reference);
}

/** Every Reference.reference in a value: a resource, its contained resources, or JSON Patch operations. */
export function collectReferences(value: unknown): string[] {
  const found: string[] = [];
  visitStrings(value, (holder, key) => {
    if (key === 'reference') found.push(holder.reference as string);
  });
  return found;
}

/**
 * Replaces each Reference.reference that `replacements` maps, and the narrative's href and src
 * links to the same URLs: the spec asks for both when fullUrls become server ids.
 */
export function rewriteReferences(value: unknown, replacements: ReadonlyMap<string, string>): void {
  if (replacements.size === 0) return;
  visitStrings(value, (holder, key) => {
    if (key === 'reference') {
      const replacement = replacements.get(holder.reference as string);
      if (replacement !== undefined) holder.reference = replacement;
    } else {
      holder.div = (holder.div as string).replace(/\b(href|src)="([^"]*)"/g, (link, attribute: string, url: string) => {
        const replacement = replacements.get(url);
        return replacement === undefined ? link : `${attribute}="${replacement}"`;
      });
    }
  });
}

/**
 * Calls `visit` for each string-valued `reference` (only Reference.reference has that name
 * and type in R4) and `div` (Narrative.div). Bundles inside are skipped: a Bundle stored as a
 * resource keeps its own references untouched.
 */
function visitStrings(root: unknown, visit: (holder: Record<string, unknown>, key: 'reference' | 'div') => void): void {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) stack.push(item);
      continue;
    }
    const holder = value as Record<string, unknown>;
    if (holder.resourceType === 'Bundle') continue;
    for (const key of Object.keys(holder)) {
      const item = holder[key];
      if (typeof item === 'string') {
        if (key === 'reference' || key === 'div') visit(holder, key);
      } else if (typeof item === 'object' && item !== null) {
        stack.push(item);
      }
    }
  }
}
