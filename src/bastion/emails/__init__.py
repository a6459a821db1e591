"""The emails Bastion sends about accounts: templates (templates.py), account emails and their single-use links (account.py), the pages those links open (pages.py)."""
