import { searchParam } from '../../fhir/search/parameters.ts';

/**
 * $everything's start and end are care dates, "not record currency dates: all records relating
 * to care provided in a certain date range" (R4 Patient-everything). For each type that records
 * when care happened, the R4 date search parameter holding that date; a resource of the type is
 * in the range when one of its values overlaps it. Types without an entry (Coverage, Consent,
 * RelatedPerson, Provenance, Device, …) describe the member rather than an episode of care and are
 * always returned, as is a resource that has no value for its type's parameter: a record without
 * a care date cannot be said to fall outside the range.
 *
 * An ExplanationOfBenefit is dated by when its services were provided (PDex/CARIN `service-date`:
 * billable period or item service dates); Claim and ClaimResponse, which R4 gives no service
 * date parameter, by `created`.
 */
const CARE_DATE_PARAMS: Record<string, string> = {
  AdverseEvent: 'date',
  AllergyIntolerance: 'date',
  Appointment: 'date',
  CarePlan: 'date',
  CareTeam: 'date',
  ChargeItem: 'occurrence',
  Claim: 'created',
  ClaimResponse: 'created',
  ClinicalImpression: 'date',
  Communication: 'sent',
  CommunicationRequest: 'occurrence',
  Composition: 'date',
  Condition: 'onset-date',
  CoverageEligibilityRequest: 'created',
  CoverageEligibilityResponse: 'created',
  DetectedIssue: 'identified',
  DeviceRequest: 'event-date',
  DiagnosticReport: 'date',
  DocumentManifest: 'created',
  // `date` is when the reference was made; `period` the service the document describes.
  DocumentReference: 'period',
  Encounter: 'date',
  EpisodeOfCare: 'date',
  ExplanationOfBenefit: 'service-date',
  FamilyMemberHistory: 'date',
  Flag: 'date',
  Goal: 'start-date',
  ImagingStudy: 'started',
  Immunization: 'date',
  ImmunizationEvaluation: 'date',
  ImmunizationRecommendation: 'date',
  Invoice: 'date',
  List: 'date',
  Media: 'created',
  MedicationAdministration: 'effective-time',
  MedicationDispense: 'whenhandedover',
  MedicationRequest: 'authoredon',
  MedicationStatement: 'effective',
  NutritionOrder: 'datetime',
  Observation: 'date',
  Procedure: 'date',
  QuestionnaireResponse: 'authored',
  RiskAssessment: 'date',
  ServiceRequest: 'occurrence',
  Specimen: 'collected',
  SupplyRequest: 'date',
  VisionPrescription: 'datewritten',
};

/** The sp_date codes holding a type's care date, or undefined when the type has none. */
export function careDateCodes(resourceType: string): string[] | undefined {
  const code = CARE_DATE_PARAMS[resourceType];
  if (!code) return undefined;
  const rows = searchParam(resourceType, code)?.rows;
  if (rows?.table !== 'date') throw new Error(`${resourceType}.${code} is not a date search parameter`);
  return rows.codes;
}

/** Every type with a care date, for the table's own check. */
export const CARE_DATED_TYPES = Object.keys(CARE_DATE_PARAMS);
