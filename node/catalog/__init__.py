"""The service catalogue (事项): our items, partners' cached catalogues, the signed endpoint."""
