"""The tenant's configuration and accounts: clients, APIs, connections and users.

These functions are shared by the Management API, the CLI, the login pages and
the demo seed, so each rule (secret handling, metadata merge, defaults) is
written once.
"""
