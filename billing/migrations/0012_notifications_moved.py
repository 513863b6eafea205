"""Copy billing's notifications and preferences into the notifications app (same ids).

A notification names what it is about by a key instead of foreign keys: "warning:<id>" for a
shortage warning, "bill:<id>:<topic>" for a bill notice. Texts are rendered when a message is
queued and these rows have none: sent ones need none, and a row still queued when this runs is
marked failed by the sender ("no text to send"), so run the sender until the queue is empty
before migrating. The reverse copies the rows back.
"""

from django.db import migrations

FORWARD = """
INSERT INTO notifications_notification (id, user_id, account_id, topic, channel, key, texts,
                                        status, error, created_at, sent_at)
SELECT id, user_id, account_id, topic, channel,
       CASE WHEN warning_id IS NOT NULL THEN 'warning:' || warning_id
            ELSE 'bill:' || bill_id || ':' || topic END,
       '{}'::jsonb, status, error, created_at, sent_at
FROM billing_notification ORDER BY id;
SELECT setval(pg_get_serial_sequence('notifications_notification', 'id'),
              COALESCE((SELECT max(id) FROM notifications_notification), 1),
              (SELECT count(*) > 0 FROM notifications_notification));
INSERT INTO notifications_notificationpreference (id, user_id, topic, email, sms, phone,
                                                  quiet_start, quiet_end)
SELECT id, user_id, topic, email, sms, phone, quiet_start, quiet_end
FROM billing_notificationpreference ORDER BY id;
SELECT setval(pg_get_serial_sequence('notifications_notificationpreference', 'id'),
              COALESCE((SELECT max(id) FROM notifications_notificationpreference), 1),
              (SELECT count(*) > 0 FROM notifications_notificationpreference));
"""

# Only billing's own topics go back; meter alarms had no table in billing.
BACKWARD = """
INSERT INTO billing_notification (id, user_id, account_id, topic, channel, warning_id, bill_id,
                                  status, error, created_at, sent_at)
SELECT id, user_id, account_id, topic, channel,
       CASE WHEN key LIKE 'warning:%' THEN split_part(key, ':', 2)::bigint END,
       CASE WHEN key LIKE 'bill:%' THEN split_part(key, ':', 2)::bigint END,
       status, error, created_at, sent_at
FROM notifications_notification
WHERE topic IN ('shortage', 'bill_issued', 'bill_overdue') ORDER BY id;
SELECT setval(pg_get_serial_sequence('billing_notification', 'id'),
              COALESCE((SELECT max(id) FROM billing_notification), 1),
              (SELECT count(*) > 0 FROM billing_notification));
INSERT INTO billing_notificationpreference (id, user_id, topic, email, sms, phone,
                                            quiet_start, quiet_end)
SELECT id, user_id, topic, email, sms, phone, quiet_start, quiet_end
FROM notifications_notificationpreference
WHERE topic IN ('shortage', 'bill_issued', 'bill_overdue') ORDER BY id;
SELECT setval(pg_get_serial_sequence('billing_notificationpreference', 'id'),
              COALESCE((SELECT max(id) FROM billing_notificationpreference), 1),
              (SELECT count(*) > 0 FROM billing_notificationpreference));
DELETE FROM notifications_notification;
DELETE FROM notifications_notificationpreference;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0011_prepaid_charge_run"),
        ("notifications", "0001_initial"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
