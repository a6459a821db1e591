"""Persistence: the ORM tables, the database handle, migrations and one repository module per aggregate.

ORM rows never leave this package: repositories return the plain records of
`bastion.storage.records`.
"""
