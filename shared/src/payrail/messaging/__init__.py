"""payrail's messaging core: the CloudEvents envelope, the transactional outbox and its relay,
inbox consumers with retries and dead-letter topics, and the dead-letter API behind
``payrail dlq``.

Exactly-once *effects* on top of at-least-once delivery: producers stage events in the business
transaction (:mod:`.outbox`) and a relay publishes them (:mod:`.relay`); consumers apply each
event in one transaction guarded by an inbox row (:mod:`.consumer`, :mod:`.inbox`).
"""
