"""Webhooks per project: Atelier POSTs a signed JSON body to the receivers a project's admins
register (page: /projects/<id>/webhooks/) when something they asked for happens.

Events (`type`)
  job.succeeded, job.failed, job.cancelled   any job kind reached that final state
  output.flagged                             a moderation check flagged an output as it was made
  output.approved, output.rejected           a reviewer decided on a flagged output
  provenance.confirmed                       an anchor batch became final on chain: ONE event per
                                             batch and project, listing that project's records of
                                             the batch (output id + SHA-256), in parts of at most
                                             1,000 records (`part`/`parts`/`count` say which)
  ping                                       the page's "Send test" button (always sent)

Body (UTF-8 JSON)::

    {"id": "<delivery uuid>", "type": "job.succeeded", "created": <unix seconds>,
     "project": <project id>, "data": {...}}

`data` carries ids, states, hashes, numbers and URL paths (relative to the site) only: never a
prompt, a generated text or any other content (a flagged output's content is hidden from most of
its project; a receiver gets none of it). A job's `result` is summarised to its numbers and ids.

Signature (Stripe's scheme). Each webhook has its own secret (shown to the project's admins on the
page, regenerable). Every attempt carries::

    Atelier-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver verifies the raw bytes it received (before parsing JSON), with the secret as UTF-8
bytes as the key, compares in constant time and refuses timestamps older than a few minutes
(replays). In Python::

    from apps.webhooks.signing import verify_signature   # or copy its ten lines
    ok = verify_signature(secret, request.headers["Atelier-Signature"], raw_body, tolerance=300)

Other headers: `Atelier-Event` (the type), `Atelier-Delivery` (the id),
`Content-Type: application/json`.

Delivery: the delivery rows are written in the same database transaction as the change that
causes them (an outbox), so an event is never lost and never sent for a change that rolled back.
A Celery task on the `cpu` queue POSTs each one (10 s timeout, redirects not followed); any 2xx
is delivered. Failures are retried after 10 s, 1 min, 5 min, 30 min and 2 h (six attempts), then
the delivery is marked failed; the page's "Redeliver" sends it again. The scheduler's periodic
sweep (`webhooks.sweep`) re-sends the deliveries that are due, so a killed worker or a flushed
Redis delays a delivery but never loses it. A receiver may get one delivery twice (at least
once): deduplicate on `id`.

Receivers: http(s) only. Addresses that are private, loopback, link-local or otherwise not
public are refused at delivery time (the host is resolved, checked, and the checked address is the
one connected to) unless `ATELIER_WEBHOOKS_ALLOW_PRIVATE=1`
(settings.ATELIER["WEBHOOKS_ALLOW_PRIVATE"]; off by default, for development and tests only).
"""
