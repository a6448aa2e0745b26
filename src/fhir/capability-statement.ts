import type { CapabilityStatement } from '@medplum/fhirtypes';

export function capabilityStatement(baseUrl: string): CapabilityStatement {
  return { resourceType: 'CapabilityStatement', status: 'active', date: new Date().toISOString(), kind: 'instance', fhirVersion: '4.0.1', format: ['json'], implementation: { description: 'Baton', url: baseUrl } };
}
