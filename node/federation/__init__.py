"""Federation: keys and partners, inbound envelopes, the outbox and its delivery, blobs."""
