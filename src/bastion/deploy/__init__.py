"""Rules as code: deploying rules from a folder or a git repository (docs/deploy.md).

    bundle.py    reading a folder in one of the three layouts -> Bundle (or BundleError)
    git.py       fetching one commit of a repository into a temporary folder
    changes.py   comparing two sets of rules by name
    plan.py      what a deploy or rollback will do, and its printed form
    drift.py     how the rules differ from the last deployment
    service.py   plan, apply, rollback, drift, history, manual rules (the public API)
    cli.py       `bastion deploy`
    errors.py    DeployError, BundleError, FetchError
"""
