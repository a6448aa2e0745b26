import type { SummaryMode } from '../representation.ts';
import type { CompositeSource, RowSource } from './parameters.ts';
import type { InstantRange } from './values.ts';

/**
 * A FHIR search as plain data (search.html): what the parser makes of the query string and what
 * the SQL builder turns into one statement. Filters are ANDed; the predicates inside one filter
 * are the comma-separated alternatives, ORed.
 */
export interface SearchRequest {
  resourceType: string;
  filters: Filter[];
  sort: SortRule[];
  count: number;
  offset: number;
  total: 'accurate' | 'estimate' | 'none' | undefined;
  summary: SummaryMode | undefined;
  elements: string[] | undefined;
  include: IncludeRule[];
  revinclude: IncludeRule[];
  /** The parameters applied, as given, for the self link (search.html#conformance: the link shows what was used). */
  applied: [string, string][];
  /** Parameters ignored because the server does not know them (reported in an OperationOutcome entry). */
  ignored: string[];
}

export type Filter =
  /** Rows matching one of the predicates exist (negate: none exists, as :not asks). */
  | { kind: 'index'; rows: RowSource; predicates: Predicate[]; negate: boolean }
  /** A value is present when, in one of the ways the parameter is stored, every source has a row (a composite needs all its components). */
  | { kind: 'missing'; present: RowSource[][]; missing: boolean }
  /** One alternative per comma-separated value, matched against each way the composite is stored. */
  | { kind: 'composite'; sources: CompositeSource[]; alternatives: Predicate[][] }
  | { kind: 'column'; column: 'id' | 'last_updated'; predicates: Predicate[] }
  /** `subject:Patient.identifier=…`: the reference points at a resource of one of the target types matching `filter`. */
  | { kind: 'chain'; rows: RowSource; targets: { type: string; filter: Filter }[] }
  /** `_has:Observation:patient:code=…`: a `type` resource whose reference (rows) points here matches `filter`. */
  | { kind: 'has'; type: string; rows: RowSource; filter: Filter };

export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';

export type Predicate =
  | { type: 'string'; mode: 'prefix' | 'exact' | 'contains'; value: string }
  /** system undefined: any system; null: no system (`|code`); code undefined: any code (`system|`). */
  | { type: 'token'; system: string | null | undefined; code: string | undefined }
  | { type: 'token-text'; text: string }
  | { type: 'token-of-type'; typeSystem: string; typeCode: string; value: string }
  | { type: 'date'; prefix: Prefix; range: InstantRange }
  /** `half` is half a unit of the last significant digit: the implicit precision of the value (search.html#number). */
  | { type: 'number'; prefix: Prefix; value: string; half: string; system?: string; unit?: string }
  /** A local target (type may be unknown for a bare id) or, with `url`, an absolute URL or canonical compared as written. */
  | { type: 'reference'; targetType?: string; id?: string; url?: string }
  | { type: 'uri'; mode: 'eq' | 'below' | 'above'; value: string }
  | { type: 'id'; id: string };

export type SortRule = { column: 'id' | 'last_updated'; descending: boolean } | { rows: RowSource; descending: boolean };

export interface IncludeRule {
  sourceType: string;
  /** Reference parameters of sourceType followed (several for `*`). */
  refs: RowSource[];
  targetType: string | undefined;
  iterate: boolean;
}
