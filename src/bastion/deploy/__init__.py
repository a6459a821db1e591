"""Rules as code: deploying rules from a folder or a git repository (docs/deploy.md).

    bundle.py    reading a folder in one of the three layouts -> Bundle (or BundleError)
    git.py       fetching one commit of a repository into a temporary folder
    changes.py   comparing two sets of rules by name
    plan.py      what a deploy or rollback will do, and its printed form
    drift.py     how the rules differ from the last deployment
    values.py    which environment variable a configuration value may come from; value digests
    service.py   plan, apply, rollback, drift, history, manual rules (the public API)
    cli.py       `bastion deploy`
    webhooks.py  deploy on push (GitHub, GitLab, Bitbucket, Azure DevOps)
    errors.py    DeployError, BundleError, FetchError
"""
