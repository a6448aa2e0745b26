import type { Bundle, BundleLink } from '@medplum/fhirtypes';
import type { OperationRoute } from '../fhir/http/routes.ts';
import { type FhirContext, read } from '../fhir/interactions.ts';
import { cursorAfter, type EverythingPage, everythingPage } from './everything/contents.ts';
import { type EverythingInput, everythingQuery, parseEverythingParameters, withParametersBody } from './everything/parameters.ts';
import { preferredHandling } from '../fhir/http/negotiation.ts';

/**
 * GET [base]/Patient/[id]/$everything (FHIR R4 OperationDefinition Patient-everything; SHALL in
 * Da Vinci PDex 2.1 for payer-to-payer exchange), and POST with the same inputs as Parameters:
 * the member's whole record as a searchset Bundle.
 *
 * 1. Parse the inputs: start and end (care dates), _since (meta.lastUpdated), _type, _count;
 *    any other parameter, or a value out of shape, is a 400 naming it.
 * 2. The Patient: the caller needs read on Patient and must see this one; a member it may not see
 *    answers 404 exactly as an unknown id does.
 * 3. Select the page: "at a minimum, the patient resource itself", then "any other resources the
 *    server has that are related to the patient and that are available for the given user"
 *    (its Patient compartment: clinical data, Coverage, claims and prior-authorization EOBs), then
 *    "whatever resources are needed to support the records" (the organizations, practitioners,
 *    locations and medications they reference, one level deep). What the caller may see is its
 *    access policy's to say, type by type: a partner payer sees only a member it holds a grant
 *    for, and a grant resting on an HRex #regular consent leaves out data bearing its excluded
 *    security labels.
 * 4. Answer: the page with the total and `self`/`next` links, absolute under the base URL.
 *
 * The Patient is returned whatever _type and _since say: the operation is about it, the spec
 * names it the minimum answer, and clients (Inferno's PDex tests) look for exactly one Patient.
 */
export const PATIENT_EVERYTHING = 'http://hl7.org/fhir/OperationDefinition/Patient-everything';

export const patientEverythingRoutes: OperationRoute[] = [
  { method: 'GET', path: '/Patient/:id/$everything', handle: (ctx, { params, pathParams, headers }) => patientEverything(ctx, pathParams.id, params, lenient(headers)) },
  {
    method: 'POST',
    path: '/Patient/:id/$everything',
    handle: (ctx, { params, body, pathParams, headers }) => patientEverything(ctx, pathParams.id, withParametersBody(params, body), lenient(headers)),
  },
];

const lenient = (headers: Headers) => preferredHandling(headers.get('prefer')) === 'lenient';

export async function patientEverything(ctx: FhirContext, patientId: string, params: URLSearchParams, lenientHandling = false): Promise<Bundle> {
  // 1. Parse the inputs
  const input = parseEverythingParameters(params, lenientHandling);

  // 2. The Patient, read as GET Patient/[id] reads it (403 without read on Patient, 404 for one
  // the caller may not see, 410 once deleted). On every page: a page is served only while the
  // member is still visible to the caller, and its AuditEvent names the member as the patient
  // even when the page holds only directory resources.
  await read(ctx, 'Patient', patientId);

  // 3. Select the page
  const page = await everythingPage(ctx.q, ctx.access, ctx.baseUrl, patientId, input);
  ctx.audit.returned(page.entries.map(({ resource }) => ({ resourceType: resource.resourceType, id: resource.id, content: resource })));

  // 4. Answer
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: page.total,
    link: pageLinks(ctx.baseUrl, patientId, input, page),
    ...(page.entries.length > 0
      ? {
          entry: page.entries.map(({ rank, resource }) => ({
            fullUrl: `${ctx.baseUrl}/${resource.resourceType}/${resource.id}`,
            resource,
            // The record matches; what supports it is included, as a search's _include would be.
            search: { mode: rank === 2 ? ('include' as const) : ('match' as const) },
          })),
        }
      : {}),
  };
}

function pageLinks(baseUrl: string, patientId: string, input: EverythingInput, page: EverythingPage): BundleLink[] {
  const url = (query: URLSearchParams) => `${baseUrl}/Patient/${patientId}/$everything?${query.toString()}`;
  const links: BundleLink[] = [{ relation: 'self', url: url(everythingQuery(input, input.cursor)) }];
  const last = page.entries.at(-1);
  if (page.hasNext && last) links.push({ relation: 'next', url: url(everythingQuery(input, cursorAfter(last))) });
  return links;
}
