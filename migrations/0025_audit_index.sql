CREATE TABLE "audit_index" (
	"position" bigint PRIMARY KEY NOT NULL,
	"event_seq" bigint NOT NULL,
	"event_id" text NOT NULL,
	"recorded" timestamp with time zone NOT NULL,
	"keys" uuid[] NOT NULL,
	CONSTRAINT "audit_index_event_id_unique" UNIQUE("event_id")
);
--> statement-breakpoint
CREATE TABLE "audit_index_strings" (
	"position" bigint NOT NULL,
	"code" text NOT NULL,
	"value" text NOT NULL,
	"exact" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "audit_index_keys_idx" ON "audit_index" USING gin ("keys");--> statement-breakpoint
CREATE INDEX "audit_index_recorded_idx" ON "audit_index" USING btree ("recorded","position");--> statement-breakpoint
CREATE INDEX "audit_index_strings_value_idx" ON "audit_index_strings" USING btree ("code","value" text_pattern_ops,"position");--> statement-breakpoint
CREATE INDEX "audit_index_strings_position_idx" ON "audit_index_strings" USING btree ("position");--> statement-breakpoint
-- The index of the trail is append-only like the trail, and archived with it.
CREATE OR REPLACE FUNCTION audit_reject_change_unless_archived() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  archived_position bigint;
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('baton.audit_archiving', true) = 'on' THEN
    IF TG_TABLE_NAME IN ('audit_chain', 'audit_index', 'audit_index_strings') THEN
      archived_position := OLD.position;
    ELSIF TG_TABLE_NAME = 'audit_events' THEN
      SELECT c.position INTO archived_position FROM audit_chain c WHERE c.event_seq = OLD.seq;
    END IF;
    IF EXISTS (
      SELECT 1 FROM audit_archive_segments s
      WHERE s.archived_txid = pg_current_xact_id() AND archived_position BETWEEN s.from_position AND s.to_position
    ) THEN
      RETURN OLD;
    END IF;
  END IF;
  RAISE EXCEPTION 'The audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'ZA001';
END
$$;
--> statement-breakpoint
CREATE TRIGGER audit_index_append_only BEFORE UPDATE OR DELETE ON audit_index FOR EACH ROW EXECUTE FUNCTION audit_reject_change_unless_archived();
--> statement-breakpoint
CREATE TRIGGER audit_index_no_truncate BEFORE TRUNCATE ON audit_index FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_index_strings_append_only BEFORE UPDATE OR DELETE ON audit_index_strings FOR EACH ROW EXECUTE FUNCTION audit_reject_change_unless_archived();
--> statement-breakpoint
CREATE TRIGGER audit_index_strings_no_truncate BEFORE TRUNCATE ON audit_index_strings FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
-- AuditEvents are no longer copied into the FHIR store: the copies go (audit_events keeps every
-- event; the sealer indexes the sealed ones again at its next start), and so do the triggers
-- that guarded them there.
DROP TRIGGER resources_audit_event_append_only ON resources;
--> statement-breakpoint
DROP TRIGGER resources_audit_event_no_truncate ON resources;
--> statement-breakpoint
DROP TRIGGER resource_history_audit_event_append_only ON resource_history;
--> statement-breakpoint
DROP TRIGGER resource_history_audit_event_no_truncate ON resource_history;
--> statement-breakpoint
DROP FUNCTION audit_reject_truncate_of_audit_events();
--> statement-breakpoint
DELETE FROM resources WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM resource_history WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM sp_string WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM sp_token WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM sp_date WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM sp_number WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM sp_quantity WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM sp_reference WHERE resource_type = 'AuditEvent';
--> statement-breakpoint
DELETE FROM sp_uri WHERE resource_type = 'AuditEvent';
