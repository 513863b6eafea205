"""One path for every message to a person: topics, preferences, quiet hours, email and SMS.

Domain apps (billing's warnings and bill notices, meters' alerts) queue `Notification` rows
through `portal.notifications.services`, with the text already rendered in every language; this
app never imports them.
"""
