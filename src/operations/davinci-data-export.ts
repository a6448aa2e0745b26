import type { ExportEngine } from '../export/engine.ts';
import type { ExportRequest } from '../export/request.ts';
import { badRequest } from '../fhir/errors.ts';
import type { OperationRoute } from '../fhir/http/routes.ts';
import { assertId } from '../fhir/interactions.ts';
import { FHIR_INSTANT, type KickOffInput, startExport } from './export.ts';

/**
 * POST|GET [base]/Group/[id]/$davinci-data-export (Da Vinci ATR, OperationDefinition
 * davinci-data-export), as PDex payer-to-payer uses it: the new payer pulls the data of the
 * members of a Group it received from $bulk-member-match.
 *
 * - `exportType` is required and must be `hl7.fhir.us.davinci-pdex#payertopayer`: the only
 *   export this server runs through the operation (anything else is a 400, never ignored).
 * - `_until` (instant): only versions written up to then, besides the Bulk Data kick-off
 *   parameters `_since`, `_type`, `_typeFilter`, `_elements`, `patient`, `_outputFormat`,
 *   checked exactly as Group/[id]/$export checks them.
 * - It runs as a Group export on the export engine: the members' compartments and the
 *   directory data they reference, under the caller's grants, polled and downloaded through the
 *   same status and file URLs; the manifest's `request` is this operation's URL.
 * - Claims go out non-financial (export/non-financial.ts): payer-to-payer exchange leaves out
 *   provider remittances and enrollee cost-sharing; prior authorizations go out whole.
 */
export const DAVINCI_DATA_EXPORT = 'http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export';
const PAYER_TO_PAYER = 'hl7.fhir.us.davinci-pdex#payertopayer';

export function davinciDataExportRoutes(engine: ExportEngine): OperationRoute[] {
  const handle: OperationRoute['handle'] = (ctx, request) => {
    const groupId = request.pathParams.id;
    assertId(groupId);
    return startExport(ctx, engine, 'group', `/Group/${groupId}/$davinci-data-export`, { ...request, groupId }, payerToPayer);
  };
  return [
    { method: 'GET', path: '/Group/:id/$davinci-data-export', handle },
    { method: 'POST', path: '/Group/:id/$davinci-data-export', handle },
  ];
}

/** Takes exportType and _until out of the kick-off's parameters; the export's claims are non-financial. */
function payerToPayer(input: KickOffInput): Partial<ExportRequest> {
  const single = (name: string): string | undefined => {
    const values = input.get(name)?.values ?? [];
    input.delete(name);
    if (values.length > 1) throw badRequest(`${name} may be given once`, [name]);
    return values[0];
  };
  const exportType = single('exportType');
  if (exportType === undefined) throw badRequest(`exportType is required: ${PAYER_TO_PAYER}`, ['exportType']);
  if (exportType !== PAYER_TO_PAYER) throw badRequest(`exportType ${exportType.slice(0, 64)} is not supported: this server runs ${PAYER_TO_PAYER}`, ['exportType']);
  const until = single('_until');
  if (until === undefined) return { nonFinancialClaims: true };
  if (!FHIR_INSTANT.test(until) || Number.isNaN(Date.parse(until))) throw badRequest('_until must be a FHIR instant with a time zone, such as 2024-01-01T00:00:00Z', ['_until']);
  return { until, nonFinancialClaims: true };
}
