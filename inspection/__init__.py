"""云端勘验: WebRTC video site inspection."""
