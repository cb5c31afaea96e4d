"""Operations: TLS serving, backup and restore."""
