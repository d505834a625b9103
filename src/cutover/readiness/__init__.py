"""When may the VM switch over? Each strategy is a wait that returns evidence.

A readiness check is *armed* before the transaction that will make it true (so no event
is missed) and *awaited* later; it returns :class:`Evidence` or raises ``WaitTimeout``
carrying the state it saw.
"""
