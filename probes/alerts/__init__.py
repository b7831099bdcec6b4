"""Alerts: what raises them (raising: a rule that broke, an interception, a silent site, a failed
run) and how they reach people (delivery: email through Django's SMTP backend, or a webhook signed
with HMAC-SHA256, probes.webhooks). Deliveries are tried from the alerts' own workers (queue
portal.alerts) with exponential backoff (tasks.deliver_alert)."""
