"""视频办: citizens call the hall by video (docs/videocalls.md)."""
