"""Working days (行政许可法 art. 82): holiday calendar data and deadline arithmetic."""
