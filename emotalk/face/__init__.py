"""Face analysis: landmark tracking and head pose (tracking), face parsing (parsing, bisenet)."""
