import { bigint, boolean, index, integer, numeric, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Current version of every resource. `content` is the resource's JSON text exactly as served
 * (meta.versionId and meta.lastUpdated included), so a read returns it without re-serializing.
 */
export const resources = pgTable(
  'resources',
  {
    resourceType: text('resource_type').notNull(),
    id: text('id').notNull(),
    versionId: integer('version_id').notNull(),
    lastUpdated: timestamp('last_updated', { withTimezone: true, mode: 'string' }).notNull(),
    deleted: boolean('deleted').notNull().default(false),
    content: text('content').notNull(),
  },
  (t) => [primaryKey({ columns: [t.resourceType, t.id] }), index('resources_type_updated_idx').on(t.resourceType, t.lastUpdated)],
);

/** Every version ever written, deletions included (content of a deletion is the tombstone). */
export const resourceHistory = pgTable(
  'resource_history',
  {
    /** Global write order: history paging and `_since` scans follow it. */
    seq: bigint('seq', { mode: 'number' }).generatedAlwaysAsIdentity().notNull(),
    resourceType: text('resource_type').notNull(),
    id: text('id').notNull(),
    versionId: integer('version_id').notNull(),
    lastUpdated: timestamp('last_updated', { withTimezone: true, mode: 'string' }).notNull(),
    deleted: boolean('deleted').notNull().default(false),
    /** The interaction that produced the version: POST, PUT, PATCH or DELETE. */
    method: text('method').notNull(),
    content: text('content').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.resourceType, t.id, t.versionId] }),
    index('resource_history_seq_idx').on(t.seq),
    index('resource_history_type_seq_idx').on(t.resourceType, t.seq),
    index('resource_history_updated_idx').on(t.lastUpdated),
  ],
);

/* Search index tables: one row per extracted value, rewritten with each version. */

const indexKey = {
  resourceType: text('resource_type').notNull(),
  resourceId: text('resource_id').notNull(),
  code: text('code').notNull(),
};

export const spString = pgTable(
  'sp_string',
  {
    ...indexKey,
    /** Lower-cased, accents removed: the default (prefix) and :contains matches. */
    value: text('value').notNull(),
    /** As written: the :exact match. */
    exact: text('exact').notNull(),
  },
  (t) => [
    index('sp_string_value_idx').on(t.resourceType, t.code, t.value.op('text_pattern_ops')),
    index('sp_string_resource_idx').on(t.resourceType, t.resourceId),
  ],
);

export const spToken = pgTable(
  'sp_token',
  {
    ...indexKey,
    system: text('system'),
    value: text('value'),
    /** Normalized display/text, for :text. */
    text: text('text'),
    /** Identifier.type coding, for :of-type. */
    typeSystem: text('type_system'),
    typeCode: text('type_code'),
  },
  (t) => [
    index('sp_token_value_idx').on(t.resourceType, t.code, t.value, t.system),
    index('sp_token_resource_idx').on(t.resourceType, t.resourceId),
  ],
);

export const spDate = pgTable(
  'sp_date',
  {
    ...indexKey,
    /** The instant range the value covers at its precision ("2020" covers the whole year). */
    start: timestamp('start', { withTimezone: true, mode: 'string' }).notNull(),
    end: timestamp('end', { withTimezone: true, mode: 'string' }).notNull(),
  },
  (t) => [
    index('sp_date_start_idx').on(t.resourceType, t.code, t.start),
    index('sp_date_end_idx').on(t.resourceType, t.code, t.end),
    index('sp_date_resource_idx').on(t.resourceType, t.resourceId),
  ],
);

export const spNumber = pgTable(
  'sp_number',
  {
    ...indexKey,
    value: numeric('value').notNull(),
  },
  (t) => [index('sp_number_value_idx').on(t.resourceType, t.code, t.value), index('sp_number_resource_idx').on(t.resourceType, t.resourceId)],
);

export const spQuantity = pgTable(
  'sp_quantity',
  {
    ...indexKey,
    value: numeric('value').notNull(),
    system: text('system'),
    /** Quantity.code, falling back to Quantity.unit. */
    unit: text('unit'),
  },
  (t) => [index('sp_quantity_value_idx').on(t.resourceType, t.code, t.value), index('sp_quantity_resource_idx').on(t.resourceType, t.resourceId)],
);

export const spReference = pgTable(
  'sp_reference',
  {
    ...indexKey,
    /** Local references resolved to type and id; null for absolute URLs that are not ours. */
    targetType: text('target_type'),
    targetId: text('target_id'),
    /** The reference as written (absolute URLs, canonicals, versions). */
    reference: text('reference').notNull(),
  },
  (t) => [
    index('sp_reference_target_idx').on(t.resourceType, t.code, t.targetId),
    index('sp_reference_reverse_idx').on(t.targetType, t.targetId),
    index('sp_reference_resource_idx').on(t.resourceType, t.resourceId),
  ],
);

export const spUri = pgTable(
  'sp_uri',
  {
    ...indexKey,
    value: text('value').notNull(),
  },
  (t) => [index('sp_uri_value_idx').on(t.resourceType, t.code, t.value), index('sp_uri_resource_idx').on(t.resourceType, t.resourceId)],
);
