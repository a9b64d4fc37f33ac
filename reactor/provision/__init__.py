"""Zero-touch provisioning: enrollments (who may be provisioned, with which key), templates (what
a provisioned device gets), and the engine that applies a template step by step, idempotently,
undoing what it created when a later step fails for good."""
