"""Payment providers: the interface top-ups are paid through, and the local sandbox provider.

Nothing here writes the ledger: `billing.services.topups` asks a provider to start a checkout,
to report a payment's status, to verify and parse its webhooks and to refund, and does the
bookkeeping itself. A provider is found by name with `provider_get()`.
"""
