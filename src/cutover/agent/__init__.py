"""``cutover agent``: the per-hypervisor service (nova-compute + os-vif's role for cutover).

One agent runs on each chassis (in the lab: inside each chassis' network namespace). It
owns that chassis' local Open_vSwitch connection and br-int checks, plugs VIFs, watches
port readiness and peer paths where the flows are, and publishes what it sees in the SB
(``Chassis_Private(<chassis>).external_ids``), where the central side waits for it with an
OVSDB event. Its API is small, versioned JSON over HTTP (a unix socket in the lab, TCP
with TLS on a real cloud), every request authenticated with a bearer token.

Modules: :mod:`.models` (the API's request/response shapes), :mod:`.service` (what the
agent does on its node), :mod:`.app` (the HTTP application: routes, authentication,
errors), :mod:`.server` (running it). Importing this package imports none of them: the
web stack is loaded only in the agent process.
"""

API_VERSION = 1
