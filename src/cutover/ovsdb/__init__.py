"""The bottom floor: OVSDB access on ovsdbapp, one connection per (host, database)."""
