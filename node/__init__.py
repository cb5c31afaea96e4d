"""Tongban node: federation, cases, API, pages, storage, CLI."""
