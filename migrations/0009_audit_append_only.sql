-- Issue 4: the audit trail is append-only. Rows may be inserted, never changed or removed; the
-- refusal carries SQLSTATE ZA001 (a class of Baton's own) so the application can tell it from
-- any other error (src/audit/append-only.ts). Only someone able to disable triggers can get past
-- this, and the hash chain and its signed checkpoints then show what they changed.
CREATE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'The audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'ZA001';
END
$$;
--> statement-breakpoint
-- The FHIR store's copies of sealed AuditEvents share resources and resource_history with every
-- other type: a TRUNCATE is refused only while AuditEvent rows are there to lose.
CREATE FUNCTION audit_reject_truncate_of_audit_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  holds_audit_events boolean;
BEGIN
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE resource_type = %L)', TG_TABLE_SCHEMA, TG_TABLE_NAME, 'AuditEvent') INTO holds_audit_events;
  IF holds_audit_events THEN
    RAISE EXCEPTION 'The audit trail is append-only: TRUNCATE on % would remove AuditEvents and is refused', TG_TABLE_NAME USING ERRCODE = 'ZA001';
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_signing_keys_append_only BEFORE UPDATE OR DELETE ON audit_signing_keys FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_signing_keys_no_truncate BEFORE TRUNCATE ON audit_signing_keys FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER resources_audit_event_append_only BEFORE UPDATE OR DELETE ON resources FOR EACH ROW WHEN (OLD.resource_type = 'AuditEvent') EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER resources_audit_event_no_truncate BEFORE TRUNCATE ON resources FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_truncate_of_audit_events();
--> statement-breakpoint
CREATE TRIGGER resource_history_audit_event_append_only BEFORE UPDATE OR DELETE ON resource_history FOR EACH ROW WHEN (OLD.resource_type = 'AuditEvent') EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER resource_history_audit_event_no_truncate BEFORE TRUNCATE ON resource_history FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_truncate_of_audit_events();
