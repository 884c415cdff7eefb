"""Alert ingestion: payloads of alerting systems, validated and normalised into `AlertEvent`s.

One module per source (`alertmanager`, `grafana`, `pagerduty`, `cloudevents`, `webhook`), each with
pydantic models of its payload (extra fields allowed: real payloads carry more) and a pure
`normalise(payload, headers) -> list[AlertEvent]`. `base` parses and validates request bodies into
problem documents (400 malformed, 422 schema), `signatures` checks HMAC signatures and `publish`
puts the events on `rb.alert.<source>` (stream RB_TRIGGERS), deduplicated by JetStream.

The API does not match runbooks: the trigger router consumes `rb.alert.*` and starts them.
"""
