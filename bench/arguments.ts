/** An integer benchmark option: the flag, else the environment variable, else the default; at least `min`. */
export function count(flag: string | undefined, env: string | undefined, fallback: number, min: number, name: string): number {
  const text = flag ?? (env ? process.env[env] : undefined) ?? String(fallback);
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}${env ? ` (${env})` : ''} must be an integer >= ${min}; got "${text}"`);
  return n;
}
