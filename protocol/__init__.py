"""Tongban wire protocol: envelopes, receipts, keys, message schemas, error codes. No I/O."""
