"""Asserting that secrets stayed secret, without printing them when they did not."""


def leaked(secrets: dict[str, str], *texts: str) -> list[str]:
    """The names of the secrets found in any of the texts. Tests assert this is empty: a failed
    assert then shows names, never the secrets (``assert secret not in output`` would print
    both)."""
    return sorted(name for name, secret in secrets.items()
                  if secret and any(secret in text for text in texts))
