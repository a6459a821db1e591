"""What goes wrong in a deploy, as values a command line or a webhook can show as they are.

    DeployError(problems)     nothing was changed; `problems` names each cause
      BundleError             the folder is not a valid bundle (each problem names its file)
      FetchError              the git repository could not be fetched
    Superseded(reason)        a push that is no longer the branch's head by the time it would apply
"""

from __future__ import annotations

__all__ = ["DeployError", "BundleError", "FetchError", "Superseded"]


class DeployError(Exception):
    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class BundleError(DeployError):
    pass


class FetchError(DeployError):
    pass


class Superseded(Exception):
    """Nothing was deployed: a newer commit became the branch's head while this one was fetched."""
