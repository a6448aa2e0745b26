import type { AuditAction, AuditInteraction } from './record.ts';

/** What a FHIR request is, from its method and its path under the FHIR base. */
export interface RequestKind {
  interaction: AuditInteraction;
  action: AuditAction;
  resourceType?: string;
  id?: string;
  versionId?: number;
  /** The OperationDefinition canonical of an operation. */
  operation?: string;
}

/** Operations Baton serves, by name, with the canonical their AuditEvents carry. */
const OPERATION_CANONICALS: Record<string, string> = {
  'member-match': 'http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match',
  'bulk-member-match': 'http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/BulkMemberMatch',
  'davinci-data-export': 'http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export',
  export: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export',
  // The Bulk Data export's status URL (poll, cancel) and its files: steps of the async export, not operations of their own.
  'export-status': 'urn:baton:operation:export-status',
  'export-file': 'urn:baton:operation:export-file',
  everything: 'http://hl7.org/fhir/OperationDefinition/Patient-everything',
  verify: 'urn:baton:operation:audit-verify',
};

const TYPE = '[A-Z][A-Za-z]+';
const ID = '[A-Za-z0-9\\-.]{1,64}';

/** `path` is what follows the FHIR base (`/Patient/1`, `/`, `/_history`). */
export function classifyRequest(method: string, path: string): RequestKind {
  const parts = path.split('/').filter(Boolean);
  const operation = parts.find((p) => p.startsWith('$'));
  if (operation) {
    const name = operation.slice(1);
    const type = new RegExp(`^${TYPE}$`).test(parts[0]) ? parts[0] : undefined;
    const id = parts.length === 3 && new RegExp(`^${ID}$`).test(parts[1]) ? parts[1] : undefined;
    // Bulk Data names the Patient and Group levels of $export by OperationDefinitions of their own.
    const level = name === 'export' && (type === 'Patient' || type === 'Group') ? `http://hl7.org/fhir/uv/bulkdata/OperationDefinition/${type.toLowerCase()}-export` : undefined;
    const action = name === 'export-status' && method === 'DELETE' ? 'D' : name === 'export-file' ? 'R' : 'E';
    return { interaction: 'operation', action, resourceType: type, id, operation: level ?? (Object.hasOwn(OPERATION_CANONICALS, name) ? OPERATION_CANONICALS[name] : `urn:baton:operation:${name.slice(0, 64)}`) };
  }
  const [type, second, third, fourth] = parts;
  const isType = type !== undefined && new RegExp(`^${TYPE}$`).test(type);
  if (parts.length === 0) return { interaction: 'batch', action: 'E' };
  if (parts.length === 1 && type === '_history') return { interaction: 'history-system', action: 'E' };
  if (parts.length === 1 && type === 'metadata') return { interaction: 'capabilities', action: 'R' };
  if (!isType) return { interaction: 'search-type', action: 'E' };
  if (parts.length === 1) {
    const writes: Record<string, RequestKind['interaction']> = { POST: 'create', PUT: 'update', DELETE: 'delete' };
    const interaction = writes[method] ?? 'search-type';
    return { interaction, action: actionOf(interaction), resourceType: type };
  }
  if (second === '_search') return { interaction: 'search-type', action: 'E', resourceType: type };
  if (second === '_history') return { interaction: 'history-type', action: 'E', resourceType: type };
  if (parts.length === 2) {
    const byMethod: Record<string, RequestKind['interaction']> = { PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
    const interaction = byMethod[method] ?? 'read';
    return { interaction, action: actionOf(interaction), resourceType: type, id: second.slice(0, 64) };
  }
  if (third === '_history' && fourth === undefined) return { interaction: 'history-instance', action: 'R', resourceType: type, id: second.slice(0, 64) };
  const versionId = /^[1-9][0-9]{0,8}$/.test(fourth ?? '') ? Number(fourth) : undefined;
  return { interaction: 'vread', action: 'R', resourceType: type, id: second.slice(0, 64), versionId };
}

export function actionOf(interaction: AuditInteraction): AuditAction {
  switch (interaction) {
    case 'create':
      return 'C';
    case 'update':
    case 'patch':
      return 'U';
    case 'delete':
      return 'D';
    case 'read':
    case 'vread':
    case 'history-instance':
    case 'capabilities':
      return 'R';
    default:
      return 'E';
  }
}
