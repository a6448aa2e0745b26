import type { Consent, Coverage, Reference, Resource, Task, TaskInput } from '@medplum/fhirtypes';
import { unprocessable } from '../fhir/errors.ts';
import { OWN_ORGANIZATION_ID } from '../fhir/own-organization.ts';

/**
 * The payer-to-payer request Task (issue 7, "Task contract"; partners and tooling depend on it):
 * intent=order, code hrex-temp#data-request, `for` the member at this payer, `requester` the
 * enrolling system's Organization, `owner` this payer, `identifier` the caller's business
 * identifier, and inputs named by type.text (or a coding of Baton's task-input CodeSystem):
 * member, prior-coverage (reference or contained old card), consent (reference or contained).
 */
export const DATA_REQUEST_CODE = { system: 'http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp', code: 'data-request' };
export const TASK_INPUT_SYSTEM = 'urn:baton:task-input';

export type RequestType = 'single-member' | 'bulk';

/** A resource the request names: stored here, or carried in the Task itself (contained). */
export type NamedResource<T extends Resource> = { reference: string } | { contained: T };

export interface DataRequest {
  /** The member's Patient id at this payer. */
  memberId: string;
  priorCoverage: NamedResource<Coverage>;
  consent: NamedResource<Consent>;
  /** How to pull the data, when the caller chose; otherwise the partner's capabilities decide. */
  requestType?: RequestType;
}

export function isDataRequest(task: Task): boolean {
  return task.code?.coding?.some((c) => c.system === DATA_REQUEST_CODE.system && c.code === DATA_REQUEST_CODE.code) ?? false;
}

/** The request a data-request Task makes, or a 422 naming the element or input that breaks the contract. */
export function parseDataRequest(task: Task): DataRequest {
  if (task.intent !== 'order') throw unprocessable('A data-request Task has intent "order"', ['Task.intent']);
  if (!task.identifier?.some((i) => i.system && i.value)) throw unprocessable("identifier is required: the caller's business identifier of the request (system and value)", ['Task.identifier']);
  if (!task.requester?.reference?.startsWith('Organization/')) throw unprocessable("requester is required: a reference to the enrolling system's Organization", ['Task.requester']);
  if (task.owner && task.owner.reference !== `Organization/${OWN_ORGANIZATION_ID}`) throw unprocessable(`owner must be this payer (Organization/${OWN_ORGANIZATION_ID}) or absent`, ['Task.owner']);

  const member = input(task, 'member');
  const memberReference = member ? referenceOf(member, 'member', 'Patient') : undefined;
  if (task.for && !task.for.reference?.startsWith('Patient/')) throw unprocessable('for must reference the member\'s Patient at this payer', ['Task.for']);
  const forReference = task.for?.reference;
  if (!memberReference && !forReference) throw unprocessable('The member input is required: a reference to the member\'s Patient at this payer (input "member", or Task.for)', ['Task.input[member]']);
  if (memberReference && forReference && memberReference !== forReference) throw unprocessable('The member input and Task.for name different Patients', ['Task.input[member]', 'Task.for']);
  const memberId = (memberReference ?? forReference)!.slice('Patient/'.length);
  if (!/^[A-Za-z0-9\-.]{1,64}$/.test(memberId)) throw unprocessable('The member reference must be Patient/<id>', ['Task.input[member]']);

  const priorCoverage = named<Coverage>(task, 'prior-coverage', 'Coverage');
  const consent = named<Consent>(task, 'consent', 'Consent');
  const requestType = input(task, 'request-type');
  let chosen: RequestType | undefined;
  if (requestType) {
    const code = requestType.valueCode ?? requestType.valueString;
    if (code !== 'single-member' && code !== 'bulk') throw unprocessable('The request-type input is "single-member" or "bulk"', ['Task.input[request-type]']);
    chosen = code;
  }
  return { memberId, priorCoverage, consent, ...(chosen ? { requestType: chosen } : {}) };
}

function input(task: Task, name: string): TaskInput | undefined {
  const matches = (task.input ?? []).filter((i) => i.type.text === name || i.type.coding?.some((c) => c.system === TASK_INPUT_SYSTEM && c.code === name));
  if (matches.length > 1) throw unprocessable(`The ${name} input is given ${matches.length} times; it is given once`, [`Task.input[${name}]`]);
  return matches[0];
}

function referenceOf(value: TaskInput, name: string, type: string): string {
  const reference: Reference | undefined = value.valueReference;
  if (!reference?.reference) throw unprocessable(`The ${name} input must be a valueReference to a ${type}`, [`Task.input[${name}]`]);
  return reference.reference;
}

function named<T extends Resource>(task: Task, name: string, type: T['resourceType']): NamedResource<T> {
  const value = input(task, name);
  if (!value) throw unprocessable(`The ${name} input is required: a reference to a ${type}, or a contained ${type}`, [`Task.input[${name}]`]);
  const reference = referenceOf(value, name, type);
  if (reference.startsWith('#')) {
    const contained = task.contained?.find((r) => r.id === reference.slice(1));
    if (!contained) throw unprocessable(`The ${name} input names ${reference}, which the Task does not contain`, [`Task.input[${name}]`]);
    if (contained.resourceType !== type) throw unprocessable(`The ${name} input must be a ${type}, not a ${contained.resourceType}`, [`Task.input[${name}]`]);
    return { contained: contained as T };
  }
  if (!new RegExp(`^${type}/[A-Za-z0-9\\-.]{1,64}$`).test(reference)) throw unprocessable(`The ${name} input must reference a ${type} here (${type}/<id>) or a contained one (#<id>)`, [`Task.input[${name}]`]);
  return { reference };
}
