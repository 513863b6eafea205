from django.db import migrations

# UPDATE and DELETE are refused for every role. TRUNCATE is refused too, unless the session has
# set portal.audit_truncate_allowed = 'on' (only the test settings do, so that Django's test
# flush can empty the tables between transactional tests).
FORWARD = """
CREATE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE'
       AND coalesce(current_setting('portal.audit_truncate_allowed', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_entry_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditlogentry
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_entry_no_truncate
    BEFORE TRUNCATE ON audit_auditlogentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_checkpoint_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
CREATE TRIGGER audit_checkpoint_no_truncate
    BEFORE TRUNCATE ON audit_auditcheckpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
"""

BACKWARD = """
DROP TRIGGER audit_checkpoint_no_truncate ON audit_auditcheckpoint;
DROP TRIGGER audit_checkpoint_no_update_delete ON audit_auditcheckpoint;
DROP TRIGGER audit_entry_no_truncate ON audit_auditlogentry;
DROP TRIGGER audit_entry_no_update_delete ON audit_auditlogentry;
DROP FUNCTION audit_reject_change();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
