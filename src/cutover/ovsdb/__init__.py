"""The bottom floor: OVSDB access on ovsdbapp, one connection per (host, database)."""

import warnings

# The ``ovs`` library probes for eventlet whenever it is installed (os-vif, which the agent
# uses, brings it in), and eventlet warns when imported: a notice for its users' developers,
# printed on every cutover command's stderr otherwise, where errors are one line each.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
