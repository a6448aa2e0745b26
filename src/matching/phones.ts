/**
 * A phone number in E.164 (+14435551212), or undefined when it cannot be one. US numbers come
 * written every way ((443) 555-1212, 443.555.1212, 1-443-555-1212, +1 443 555 1212 ext. 4);
 * all of them reduce to the same 10-digit NANP number. Numbers starting with + and another
 * country code are kept as written. Seven-digit local numbers cannot be placed and are dropped.
 */
export function normalizePhone(value: string): string | undefined {
  const withoutExtension = value.replace(/\s*(?:ext\.?|extension|x|#)\s*\d+\s*$/i, '');
  const international = withoutExtension.trim().startsWith('+');
  let digits = withoutExtension.replace(/\D/g, '');
  if (international && !digits.startsWith('1')) return digits.length >= 8 && digits.length <= 15 ? `+${digits}` : undefined;
  if (digits.length === 11 && digits.startsWith('1')) digits = digits.slice(1);
  if (digits.length !== 10) return undefined;
  // NANP: neither the area code nor the exchange starts with 0 or 1.
  if (!/^[2-9]\d{2}[2-9]\d{6}$/.test(digits)) return undefined;
  return `+1${digits}`;
}
