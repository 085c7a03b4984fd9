"""Key/value secrets: version 1 (plain) and version 2 (versioned)."""
