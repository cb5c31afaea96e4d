"""The case domain's HTTP edge: staff case API, files, and the citizens' public API. Handlers
are thin: they authenticate, parse, call node.cases, and map its errors (node.api.errors)."""
