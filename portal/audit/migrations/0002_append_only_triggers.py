from django.db import migrations

# UPDATE, DELETE and TRUNCATE are refused to every role that cannot switch triggers off (that
# is, anyone but the table owner and superusers: run the app as its own role, see
# `manage.py db_grant_app_role`). The one exception is a test database (named test_*) whose
# session has set portal.audit_truncate_allowed = 'on', so that Django's test flush can empty
# the tables between transactional tests.
FORWARD = r"""
CREATE FUNCTION append_only_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE'
       AND current_database() LIKE 'test\_%'
       AND coalesce(current_setting('portal.audit_truncate_allowed', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_entry_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditlogentry
    FOR EACH ROW EXECUTE FUNCTION append_only_reject();
CREATE TRIGGER audit_entry_no_truncate
    BEFORE TRUNCATE ON audit_auditlogentry
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_reject();
CREATE TRIGGER audit_checkpoint_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION append_only_reject();
CREATE TRIGGER audit_checkpoint_no_truncate
    BEFORE TRUNCATE ON audit_auditcheckpoint
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_reject();
"""

BACKWARD = """
DROP TRIGGER audit_checkpoint_no_truncate ON audit_auditcheckpoint;
DROP TRIGGER audit_checkpoint_no_update_delete ON audit_auditcheckpoint;
DROP TRIGGER audit_entry_no_truncate ON audit_auditlogentry;
DROP TRIGGER audit_entry_no_update_delete ON audit_auditlogentry;
DROP FUNCTION append_only_reject();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
