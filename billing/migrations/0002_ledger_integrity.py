"""The ledger's invariants, kept by PostgreSQL whatever code writes the rows.

- Journal entries and postings are append-only: the audit app's append_only_reject() trigger
  refuses UPDATE, DELETE and TRUNCATE (and `manage.py db_grant_app_role` revokes them from the
  app's role), so a correction can only be a reversing entry.
- An entry's postings are written by one INSERT statement and sum to zero, in the entry's
  currency; a statement-level trigger over the inserted rows checks both, and refuses postings
  added to an entry that already has some.
- A wallet's balance is moved by the same statement-level trigger, so `Wallet.balance` is the
  negated sum of its ledger account's postings inside every transaction (a wallet is what the
  utility owes the customer: credits raise it). The row lock of that UPDATE serialises
  concurrent top-ups and charges of one wallet; nothing can lose an update.
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION billing_postings_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bad record;
BEGIN
    SELECT n.entry_id, sum(n.amount) AS total INTO bad
      FROM new_postings n GROUP BY n.entry_id HAVING sum(n.amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: its postings sum to %',
            bad.entry_id, bad.total USING ERRCODE = 'check_violation';
    END IF;
    SELECT n.entry_id INTO bad FROM new_postings n
      JOIN billing_journalentry e ON e.id = n.entry_id
      JOIN billing_ledgeraccount a ON a.id = n.ledger_account_id
     WHERE a.currency <> e.currency LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % mixes currencies', bad.entry_id
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT p.entry_id INTO bad FROM billing_posting p
     WHERE p.entry_id IN (SELECT entry_id FROM new_postings)
       AND p.id NOT IN (SELECT id FROM new_postings) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % is already posted; post a reversal instead',
            bad.entry_id USING ERRCODE = 'check_violation';
    END IF;
    UPDATE billing_wallet w SET balance = w.balance - s.total, updated_at = now()
      FROM (SELECT ledger_account_id, sum(amount) AS total FROM new_postings
             GROUP BY ledger_account_id) s
     WHERE w.ledger_account_id = s.ledger_account_id;
    RETURN NULL;
END $$;

CREATE TRIGGER billing_postings_check AFTER INSERT ON billing_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION billing_postings_check();

CREATE TRIGGER billing_posting_no_update_delete BEFORE UPDATE OR DELETE ON billing_posting
    FOR EACH ROW EXECUTE FUNCTION append_only_reject();
CREATE TRIGGER billing_posting_no_truncate BEFORE TRUNCATE ON billing_posting
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_reject();
CREATE TRIGGER billing_journal_no_update_delete BEFORE UPDATE OR DELETE ON billing_journalentry
    FOR EACH ROW EXECUTE FUNCTION append_only_reject();
CREATE TRIGGER billing_journal_no_truncate BEFORE TRUNCATE ON billing_journalentry
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_reject();

-- The balance moves only with postings.
CREATE FUNCTION billing_wallet_balance_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.balance <> 0 THEN
        RAISE EXCEPTION 'a new wallet starts at zero' USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.balance IS DISTINCT FROM OLD.balance
       AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'a wallet balance changes only through ledger postings'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER billing_wallet_balance_guard BEFORE INSERT OR UPDATE ON billing_wallet
    FOR EACH ROW EXECUTE FUNCTION billing_wallet_balance_guard();
"""

BACKWARD = r"""
DROP TRIGGER billing_wallet_balance_guard ON billing_wallet;
DROP FUNCTION billing_wallet_balance_guard();
DROP TRIGGER billing_journal_no_truncate ON billing_journalentry;
DROP TRIGGER billing_journal_no_update_delete ON billing_journalentry;
DROP TRIGGER billing_posting_no_truncate ON billing_posting;
DROP TRIGGER billing_posting_no_update_delete ON billing_posting;
DROP TRIGGER billing_postings_check ON billing_posting;
DROP FUNCTION billing_postings_check();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("audit", "0002_append_only_triggers"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
