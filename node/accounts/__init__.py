"""Staff accounts, roles, login (argon2 + short-lived JWT), citizen access by query code."""
